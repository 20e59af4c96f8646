// Redis URLs for the quota store: standalone, Sentinel and Cluster, and the client options they give.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { createRedisClient, parseRedisUrl, type RedisTarget } from '../../src/quota/redis-store.js';

describe('parseRedisUrl', () => {
  const good: [string, string, RedisTarget][] = [
    [
      'standalone',
      'redis://127.0.0.1:6379',
      { kind: 'standalone', url: 'redis://127.0.0.1:6379', tls: false },
    ],
    [
      'standalone over TLS with credentials and db',
      'rediss://u:p@redis.internal:6380/2',
      { kind: 'standalone', url: 'rediss://u:p@redis.internal:6380/2', tls: true },
    ],
    [
      'sentinel, two sentinels',
      'redis+sentinel://s1:26379,s2:26380/mymaster',
      {
        kind: 'sentinel',
        sentinels: [
          { host: 's1', port: 26379 },
          { host: 's2', port: 26380 },
        ],
        masterName: 'mymaster',
        db: 0,
        tls: false,
      },
    ],
    [
      'sentinel with default ports, encoded password, db and sentinel credentials',
      'redis+sentinel://app:p%40ss@s1,s2/mymaster/3?sentinelUsername=watch&sentinelPassword=s%3Dcret',
      {
        kind: 'sentinel',
        sentinels: [
          { host: 's1', port: 26379 },
          { host: 's2', port: 26379 },
        ],
        masterName: 'mymaster',
        db: 3,
        tls: false,
        username: 'app',
        password: 'p@ss',
        sentinelUsername: 'watch',
        sentinelPassword: 's=cret',
      },
    ],
    [
      'sentinel over TLS, password only',
      'rediss+sentinel://:secret@s1:26379/m',
      {
        kind: 'sentinel',
        sentinels: [{ host: 's1', port: 26379 }],
        masterName: 'm',
        db: 0,
        tls: true,
        password: 'secret',
      },
    ],
    [
      'cluster, three nodes incl. IPv6',
      'redis+cluster://n1:7000,n2:7001,[::1]:7002',
      {
        kind: 'cluster',
        nodes: [
          { host: 'n1', port: 7000 },
          { host: 'n2', port: 7001 },
          { host: '::1', port: 7002 },
        ],
        tls: false,
      },
    ],
    [
      'cluster over TLS, default port, ACL user',
      'rediss+cluster://quota:pw@n1',
      { kind: 'cluster', nodes: [{ host: 'n1', port: 6379 }], tls: true, username: 'quota', password: 'pw' },
    ],
  ];
  for (const [name, url, expected] of good) {
    test(name, () => assert.deepEqual(parseRedisUrl(url), expected));
  }

  const bad: [string, string, RegExp][] = [
    ['another scheme', 'http://localhost:6379', /expected redis:\/\//],
    ['sentinel without a master name', 'redis+sentinel://s1:26379', /master name/],
    ['sentinel with too many path segments', 'redis+sentinel://s1/m/1/x', /master name/],
    ['sentinel with a bad db', 'redis+sentinel://s1/m/x', /bad db/],
    ['cluster with a db', 'redis+cluster://n1/1', /no path/],
    ['a port out of range', 'redis+cluster://n1:99999', /bad port/],
    ['an empty host', 'redis+cluster://n1,,n2', /bad host/],
  ];
  for (const [name, url, message] of bad) {
    test(`refuses ${name}`, () => assert.throws(() => parseRedisUrl(url), message));
  }

  test('errors never echo the password', () => {
    assert.throws(
      () => parseRedisUrl('redis+cluster://user:hunter2@n1:99999'),
      (err: unknown) => err instanceof RangeError && !err.message.includes('hunter2'),
    );
  });
});

describe('createRedisClient', () => {
  const lazy = { redisOptions: { lazyConnect: true }, clusterOptions: { lazyConnect: true } };
  const cases: [string, string, 'redis' | 'cluster'][] = [
    ['standalone', 'redis://127.0.0.1:1', 'redis'],
    ['sentinel', 'redis+sentinel://127.0.0.1:1/mymaster', 'redis'],
    ['cluster', 'redis+cluster://127.0.0.1:1,127.0.0.1:2', 'cluster'],
  ];
  for (const [name, url, kind] of cases) {
    test(`${name}: a ${kind} with fail-fast options`, () => {
      const client = createRedisClient(url, { ...lazy, commandTimeoutMs: 123 });
      try {
        if (kind === 'cluster') {
          assert.ok(client instanceof Cluster);
          assert.equal(client.options.enableOfflineQueue, false);
          assert.equal(client.options.redisOptions?.commandTimeout, 123);
          assert.equal(client.options.redisOptions?.maxRetriesPerRequest, 0);
          assert.equal(client.options.redisOptions?.connectTimeout, 2000);
        } else {
          assert.ok(client instanceof Redis);
          assert.equal(client.options.enableOfflineQueue, false);
          assert.equal(client.options.commandTimeout, 123);
          assert.equal(client.options.maxRetriesPerRequest, 0);
          assert.equal(client.options.autoResendUnfulfilledCommands, false);
          assert.equal(client.options.connectTimeout, 2000);
          assert.equal(client.options.connectionName, 'portcullis-quota');
        }
      } finally {
        client.disconnect();
      }
    });
  }

  test('sentinel: sentinels, master name and credentials reach ioredis', () => {
    const client = createRedisClient('redis+sentinel://a:b@s1:1,s2:2/mymaster/4?sentinelPassword=sp', lazy);
    try {
      assert.ok(client instanceof Redis);
      assert.deepEqual(client.options.sentinels, [
        { host: 's1', port: 1 },
        { host: 's2', port: 2 },
      ]);
      assert.equal(client.options.name, 'mymaster');
      assert.equal(client.options.db, 4);
      assert.equal(client.options.username, 'a');
      assert.equal(client.options.password, 'b');
      assert.equal(client.options.sentinelPassword, 'sp');
    } finally {
      client.disconnect();
    }
  });
});

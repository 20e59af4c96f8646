// Watches the catalog file AND the files it names (schemas, JWKS files) and calls back when any of
// them changes. It watches DIRECTORIES, not files: a mounted Kubernetes ConfigMap is updated by
// swapping a `..data` symlink, which a watch on the old file would never see. Bursts of events are
// debounced, and a change is reported only when the bytes of one of the files actually changed.
import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface CatalogWatcher {
  close(): void;
}

export interface WatchOptions {
  readonly debounceMs?: number;
  readonly onError?: (err: unknown) => void;
  /** The files the served catalog names (absolute paths); asked again after every check. */
  readonly references?: () => readonly string[];
}

export function watchCatalog(file: string, onChange: () => void, options: WatchOptions = {}): CatalogWatcher {
  const debounceMs = options.debounceMs ?? 200;
  const references = options.references ?? (() => []);
  let lastHash = '';
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const watchers = new Map<string, FSWatcher>();

  /** One hash over the catalog and every file it names (a missing named file counts as empty). */
  const fingerprint = async (): Promise<string> => {
    const hash = createHash('sha256').update(await readFile(file, 'utf8'));
    for (const ref of references()) {
      const text = await readFile(ref, 'utf8').catch(() => '');
      hash.update(`\0${ref}\0${text}`);
    }
    return hash.digest('hex');
  };
  const check = async () => {
    try {
      const hash = await fingerprint();
      if (hash !== lastHash && !closed) {
        const first = lastHash === '';
        lastHash = hash;
        if (!first) onChange();
      }
    } catch (err: unknown) {
      // Mid-swap the file may be briefly absent: the next event (or the retry) settles it.
      options.onError?.(err);
    }
    if (!closed) follow();
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(check, debounceMs);
  };
  /** Watches the catalog's directory and those of the files it names now; drops the others. */
  const follow = () => {
    const dirs = new Set([dirname(file), ...references().map((ref) => dirname(ref))]);
    for (const [dir, watcher] of watchers) {
      if (!dirs.has(dir)) {
        watcher.close();
        watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      if (watchers.has(dir)) continue;
      try {
        // Any event in these directories (the file itself, a named file, ConfigMap's `..data`
        // swap): the fingerprint decides whether anything changed.
        const watcher = watch(dir, () => schedule());
        watcher.on('error', (err) => options.onError?.(err));
        watchers.set(dir, watcher);
      } catch (err: unknown) {
        options.onError?.(err);
      }
    }
  };
  follow();
  void check(); // remember the bytes being served now
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      for (const watcher of watchers.values()) watcher.close();
      watchers.clear();
    },
  };
}

// What every transport of the Check listener shares: the service names and the Listener contract.
// Its own module so that listener.ts (which picks a transport) and the transports do not import
// each other.
import type { CheckHandler } from './server.js';

export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';
/** The services health reports on: '' (the server as a whole) and the Check service. */
export const HEALTH_SERVICES = ['', AUTHORIZATION_SERVICE] as const;

export interface ListenerOptions {
  readonly address: string;
  /** Largest request message accepted; a larger one is refused with RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes: number;
  readonly check: CheckHandler;
}

export interface Listener {
  readonly port: number;
  /** SERVING or NOT_SERVING for every service, to Check callers and Watch streams alike. */
  setServing(serving: boolean): void;
  /**
   * Stop accepting (GOAWAY on HTTP/2), let calls in flight finish, and after `graceMs` cut the
   * rest (`onForce` is told). Resolves when every connection is closed.
   */
  shutdown(graceMs: number, onForce: () => void): Promise<void>;
}

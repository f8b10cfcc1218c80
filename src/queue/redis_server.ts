/**
 * A local redis-server (the Debian package redis-server) for the queue's tests and benchmark: on
 * a free 127.0.0.1 port, its files in a given folder, with appendonly persistence.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  readonly process: ChildProcess;
  readonly port: number;
  readonly url: string;
  /** SIGTERM: redis-server writes its append-only file and exits. */
  stop(): Promise<void>;
}

/** Starts redis-server on 127.0.0.1:`port` with `dir` as its working folder; resolves once it accepts connections. */
export async function startRedisServer(dir: string, port: number): Promise<RedisServer> {
  const p = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--daemonize', 'no',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`redis-server exited (${code}) before it was ready:\n${out}`));
    p.once('error', (e) => reject(new Error(`cannot start redis-server (Debian: apt-get install redis-server): ${e.message}`)));
    p.once('exit', onExit);
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('Ready to accept connections')) {
        p.off('exit', onExit);
        resolve();
      }
    });
  });
  return {
    process: p,
    port,
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await exited;
    },
  };
}

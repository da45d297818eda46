/**
 * Issue 14 benchmarks against the machine's libvirtd, each beside its bare baseline in the same run:
 * 1. discovery of 200 defined domains (one raw disk each; they need not run): esnap's full read
 *    (list + batched dumpxml/domstats + disk mapping) and apply into SQLite, vs bare `virsh list
 *    --all` plus one `virsh dumpxml` per domain (target: discovery < 5 s);
 * 2. a single domain event (a title change) until the API's database shows it, median of 20
 *    (target < 2 s);
 * 3. a live qcow2 snapshot of a running domain through esnap's qcow2 driver over libvirt's monitor
 *    vs the same `blockdev-snapshot-internal-sync` sent with bare `virsh qemu-monitor-command`
 *    (target: within 20 %), alternating which goes first; the first esnap snapshot (which learns
 *    the domain's device with a query-block) is left out of the median and printed apart.
 * Run: npm run build --silent && node dist/bench/libvirt.bench.js (as root, libvirtd running).
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createRuntime, type Runtime } from '../src/runtime.js';
import { NodeCommandRunner } from '../src/storage/node-runner.js';
import { Qcow2Driver } from '../src/storage/qcow2/qcow2.driver.js';
import { driverExtras } from '../src/hypervisor/hypervisor.js';
import { readInventory } from '../src/hypervisor/libvirt.inventory.js';
import { Virsh } from '../src/hypervisor/virsh.js';
import { createDriver } from '../src/storage/drivers.js';
import { fmt, percentile } from './lib.js';

const run = promisify(execFile);
const URI = 'qemu:///system';
const virsh = async (...a: string[]): Promise<string> => (await run('virsh', ['-c', URI, ...a], { maxBuffer: 64 << 20 })).stdout;
const now = (): number => performance.now();
const median = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);

function xml(name: string, disk: string, format: 'raw' | 'qcow2'): string {
  return `<domain type='qemu'><name>${name}</name><memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='${format}'/><source file='${disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>`;
}

/** Starts esnap on a fresh SQLite database and the two bench storages, timed; with libvirt the start includes the first full inventory. */
async function timedStart(db: string, files: string, images: string, libvirt: boolean): Promise<{ rt: Runtime; ms: number }> {
  const t = now();
  const rt = await createRuntime({
    databaseUrl: `sqlite:${db}`,
    adminApiKey: 'bench-admin-key-0123456789abcdef',
    node: 'bench',
    storages: [
      { name: 'files', driver: 'file', root: files },
      { name: 'images', driver: 'qcow2', root: images },
    ],
    localAgent: true,
    scheduler: false,
    ...(libvirt ? { hypervisor: { kind: 'libvirt', uri: URI, dc: null } as const } : {}),
  });
  return { rt, ms: now() - t };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'esnap-libvirt-bench-'));
  await chmod(dir, 0o755);
  const files = join(dir, 'files');
  const images = join(dir, 'images');
  await mkdir(files, { recursive: true });
  await mkdir(images, { recursive: true });
  const tag = `lvb${Date.now().toString(36)}`;
  const uuids: string[] = [];
  try {
    process.stdout.write('defining 200 domains… ');
    // Set-up only: one virsh process defines them all (virsh runs `;`-separated commands).
    const defines: string[] = [];
    for (let i = 0; i < 200; i++) {
      const disk = join(files, `${tag}-${i}.img`);
      await writeFile(disk, '');
      await run('truncate', ['-s', '16M', disk]);
      const f = join(dir, `${tag}-${i}.xml`);
      await writeFile(f, xml(`${tag}-${i}`, disk, 'raw'));
      defines.push(`define ${f}`);
    }
    await virsh(defines.join('; '));
    const listed = await virsh('list', '--all', '--name', '--uuid');
    for (let i = 0; i < 200; i++) {
      const line = listed.split('\n').find((l) => l.trim().endsWith(` ${tag}-${i}`));
      uuids.push(line!.trim().split(/\s+/)[0]!);
    }
    console.log('done');
    console.log(`load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);

    // 1a. Where esnap's discovery spends its time: reading libvirt, mapping disks (no database).
    {
      const runner = new NodeCommandRunner();
      const v = new Virsh(runner, URI);
      const storages = [
        { name: 'files', driver: 'file', root: files },
        { name: 'images', driver: 'qcow2', root: images },
      ].map((config) => ({ config, driver: createDriver(config, runner) }));
      for (const s of storages) await s.driver.init?.();
      let t0 = now();
      const ids = await v.persistentUuids();
      const listMs = now() - t0;
      t0 = now();
      const described = await v.describe(ids);
      const describeMs = now() - t0;
      t0 = now();
      await readInventory(v, storages, 'bench', null);
      const fullMs = now() - t0;
      console.log(
        `1a. phases (${described.length} domains on the host): list ${fmt(listMs, 0)} ms, describe ${fmt(describeMs, 0)} ms, whole read with disk mapping ${fmt(fullMs, 0)} ms`,
      );
    }

    // 1. bare baseline, then esnap's discovery (runtime start includes the first full inventory).
    let t = now();
    await virsh('list', '--all');
    for (const u of uuids) await virsh('dumpxml', u);
    const bare = now() - t;
    // The same start without libvirt (fresh database, same storages): what start-up costs anyway.
    const { rt: plain, ms: plainMs } = await timedStart(join(dir, 'plain.db'), files, images, false);
    await plain.close();
    const { rt, ms: startMs } = await timedStart(join(dir, 'esnap.db'), files, images, true);
    const discovered = await rt.ctx.db.selectFrom('vm').select('uuid').where('uuid', 'in', uuids).execute();
    console.log(
      `1. discovery of 200 domains: esnap start with its first inventory ${fmt(startMs, 0)} ms (${discovered.length} VMs found), the same start without libvirt ${fmt(plainMs, 0)} ms | bare virsh list --all + 200× dumpxml ${fmt(bare, 0)} ms | target < 5000 ms`,
    );

    // 2. single event → database, median of 20.
    const lat: number[] = [];
    for (let i = 0; i < 20; i++) {
      const u = uuids[i]!;
      const title = `t${i}x${Date.now().toString(36)}`;
      t = now();
      await virsh('desc', u, '--title', '--config', title);
      for (;;) {
        const row = await rt.ctx.db.selectFrom('vm').select('alias').where('uuid', '=', u).executeTakeFirst();
        if (row?.alias === title) break;
        if (now() - t > 60_000) throw new Error('event not reflected within 60 s');
        await new Promise((r) => setTimeout(r, 10));
      }
      lat.push(now() - t);
    }
    console.log(`2. single event reflected: median ${fmt(median(lat), 0)} ms, max ${fmt(Math.max(...lat), 0)} ms over 20 | target < 2000 ms`);
    await rt.close();

    // 3. live qcow2 snapshot: driver through libvirt's monitor vs bare virsh monitor command.
    const q = join(images, `${tag}-live.qcow2`);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', q, '64M']);
    const f = join(dir, `${tag}-live.xml`);
    await writeFile(f, xml(`${tag}-live`, q, 'qcow2'));
    await virsh('define', f);
    const live = (await virsh('domuuid', `${tag}-live`)).trim();
    uuids.push(live);
    await virsh('start', live);
    const runner = new NodeCommandRunner();
    const driver = new Qcow2Driver({ root: images, runner, ...driverExtras({ kind: 'libvirt', uri: URI, dc: null }, runner) });
    await driver.init();
    const node = (JSON.parse(await virsh('qemu-monitor-command', live, '{"execute":"query-block"}')) as { return: Array<{ inserted?: { file?: string; 'node-name'?: string } }> })
      .return.find((b) => b.inserted?.file === q)!.inserted!['node-name']!;
    const viaEsnap: number[] = [];
    const viaBare: number[] = [];
    let firstMs = 0;
    for (let i = 0; i < 21; i++) {
      const esnapRound = async (): Promise<void> => {
        const s = now();
        await driver.create({ path: `${tag}-live.qcow2`, libvirtDomain: live }, `es-${i + 1}`, { name: `b${i}` });
        if (i === 0) firstMs = now() - s;
        else viaEsnap.push(now() - s);
      };
      const bareRound = async (): Promise<void> => {
        const s = now();
        await virsh('qemu-monitor-command', live, JSON.stringify({ execute: 'blockdev-snapshot-internal-sync', arguments: { device: node, name: `bare-${i}` } }));
        viaBare.push(now() - s);
      };
      if (i % 2 === 0) await esnapRound().then(bareRound);
      else await bareRound().then(esnapRound);
    }
    const e = median(viaEsnap);
    const b = median(viaBare);
    console.log(`3. live qcow2 snapshot: esnap via libvirt monitor median ${fmt(e, 0)} ms | bare virsh qemu-monitor-command ${fmt(b, 0)} ms | overhead ${fmt(((e - b) / b) * 100, 0)} % (target ≤ 20 %); first esnap snapshot of the domain ${fmt(firstMs, 0)} ms`);
  } finally {
    for (const u of uuids) {
      await virsh('destroy', u).catch(() => undefined);
      await virsh('undefine', u).catch(() => undefined);
    }
    await rm(dir, { recursive: true, force: true });
  }
}

await main();

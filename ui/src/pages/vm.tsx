/** A VM: its disks, snapshots and snapshot definitions, with every action the API offers. */
import type { ComponentChildren } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { getResult, seg } from '../api.js';
import { makeAct, type Notice } from '../actions.js';
import type { Identity } from '../auth.js';
import { Badge, DiskFlags, ErrorText, Loading } from '../components.js';
import { formatMb } from '../format.js';
import { useLoad } from '../hooks.js';
import { backupsPath, onLinkClick } from '../router.js';
import { waitForeign } from '../tasks.js';
import type { Definition, Disk, Snapshot, Vm, VmStatus } from '../types.js';
import { Snapshots } from './snapshots.js';
import { Timeline } from './timeline.js';
import { Definitions } from './definitions.js';

export interface VmData {
  vm: Vm;
  disks: Disk[];
  snapshots: Snapshot[];
  defs: Definition[];
  status: VmStatus;
}

async function loadVm(hostname: string): Promise<VmData> {
  const base = `vm/${seg(hostname)}`;
  // The VM first: a 404 `VM not found` is one clear answer, not five.
  const vm = await getResult<Vm>(`${base}/define`);
  const [disks, snapshots, defs, status] = await Promise.all([
    getResult<Disk[]>(`${base}/define/disk`),
    getResult<Snapshot[]>(`${base}/snapshot`, { full: true }),
    getResult<Definition[]>(`${base}/define/snapshot`, { full: true, extended: true }),
    getResult<VmStatus>(`${base}/status`),
  ]);
  return { vm, disks, snapshots, defs, status };
}

const TOAST_WORD: Record<Notice['kind'], string> = { busy: 'working', ok: 'done', warn: 'warning', bad: 'failed' };

/**
 * The outcome of the latest action as one toast: green done, amber warning, red failed, blue
 * while working; the user dismisses it, and it stays on this page (leaving the page drops it).
 */
export function Toast({ notice, onDismiss }: { notice: Notice | null; onDismiss: () => void }) {
  return (
    <div class={notice ? `toast toast-${notice.kind}` : 'sr-only'} role="status" aria-live="polite" data-testid="notice" data-kind={notice?.kind}>
      {notice ? (
        <>
          <p>
            <Badge kind={notice.kind}>{TOAST_WORD[notice.kind]}</Badge> {notice.text}
          </p>
          <button type="button" class="link" onClick={onDismiss} aria-label="Dismiss the notice">
            Dismiss
          </button>
        </>
      ) : null}
    </div>
  );
}

/** One term of the VM's facts list. */
function Fact({ term, testId, children }: { term: string; testId?: string; children: ComponentChildren }) {
  return (
    <div>
      <dt>{term}</dt>
      <dd data-testid={testId}>{children}</dd>
    </div>
  );
}

export function VmPage({ hostname, who }: { hostname: string; who: Identity }) {
  const { data, error, loading } = useLoad(() => loadVm(hostname), hostname, { hostname });
  const [notice, setNotice] = useState<Notice | null>(null);
  const act = useMemo(() => makeAct(hostname, setNotice), [hostname]);

  // Tasks of this VM started elsewhere (scheduler, other users): follow them, reload when they end.
  const running = data ? Object.keys(data.status.tasks).sort().join(',') : '';
  useEffect(() => {
    if (!running) return;
    for (const id of running.split(',')) void waitForeign(id, hostname, `Task on ${hostname}`);
  }, [running, hostname]);

  useEffect(() => {
    document.title = `${hostname} · esnap`;
  }, [hostname]);

  // A link from the overview's problems names a section (#definitions, #snapshots): show it once loaded.
  const loaded = data !== null;
  // A VM mirroring a libvirt domain (its disks name their target device): status and disks come from libvirt.
  const libvirt = data?.disks.some((d) => d.target !== undefined) ?? false;
  useEffect(() => {
    if (loaded && location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
  }, [loaded]);

  return (
    <main id="main">
      <nav aria-label="Breadcrumb" class="crumbs">
        <a href="/" onClick={(e) => onLinkClick(e, '/')}>
          Overview
        </a>{' '}
        › <span aria-current="page">{hostname}</span>
      </nav>
      <h1>{hostname}</h1>
      <ErrorText error={error} />
      {!data && loading ? <Loading what="the VM" /> : null}
      {data ? (
        <>
          <dl class="facts">
            <Fact term="Node">{data.vm.node ?? '—'}</Fact>
            <Fact term="Status" testId="vm-status">
              {data.vm.status}
              {libvirt ? <span class="muted"> (reported by libvirt)</span> : null}
            </Fact>
            <Fact term="Owner">{data.vm.owner ?? '—'}</Fact>
            <Fact term="Backups">
              <a href={backupsPath(hostname)} onClick={(e) => onLinkClick(e, backupsPath(hostname))}>
                Backups of {hostname}
              </a>
            </Fact>
            <Fact term="Disks" testId="vm-disks">
              {data.disks.length === 0
                ? 'none'
                : data.disks.map((d, i) => (
                    <span key={d.disk_id} data-disk={d.disk_id}>
                      {i > 0 ? ', ' : ''}disk {d.disk_id}: {formatMb(d.size)}
                      <DiskFlags target={d.target} detached={d.detached} unmapped={d.reason} long />
                    </span>
                  ))}
            </Fact>
          </dl>
          <Toast notice={notice} onDismiss={() => setNotice(null)} />
          <Timeline hostname={hostname} />
          <Snapshots data={data} act={act} />
          <Definitions data={data} act={act} who={who} />
        </>
      ) : null}
    </main>
  );
}

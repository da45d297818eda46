import { describe, expect, it } from 'vitest';
import { parseDomainXml, parseDomstatsState, statusOfState, DOMAIN_STATE } from '../../src/hypervisor/libvirt.domains.js';
import { parseXml } from '../../src/hypervisor/xml.js';

const XML = `<domain type='qemu' id='3'>
  <name>web&amp;01</name>
  <uuid>149BFAAB-77bf-4613-ae45-9f9cf6066207</uuid>
  <title>Front &lt;end&gt;</title>
  <!-- a comment -->
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/a.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/zvol/tank/x'/><target dev='vdb'/></disk>
    <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>
    <disk type="network" device="disk"><source protocol="rbd" name="pool/img"/><target dev="vdc"/></disk>
  </devices>
</domain>`;

describe('libvirt domain descriptions', () => {
  it('reads identity, title and the disks (cdroms left out), with entities decoded', () => {
    expect(parseDomainXml(XML)).toEqual({
      uuid: '149bfaab-77bf-4613-ae45-9f9cf6066207',
      name: 'web&01',
      title: 'Front <end>',
      disks: [
        { target: 'vda', source: '/var/lib/a.qcow2', type: 'file', format: 'qcow2' },
        { target: 'vdb', source: '/dev/zvol/tank/x', type: 'block', format: 'raw' },
        { target: 'vdc', source: null, type: 'network', format: null },
      ],
    });
  });

  it('refuses what is not a well-formed domain', () => {
    expect(() => parseDomainXml('<network><name>x</name></network>')).toThrow(/not a domain/);
    expect(() => parseXml('<domain><name>x</domain>')).toThrow(/does not close/);
    expect(() => parseXml('<domain>')).toThrow(/not closed/);
    expect(() => parseDomainXml('<domain><name>x</name><uuid>nope</uuid></domain>')).toThrow(/without name or uuid/);
  });

  it('maps libvirt states to Danube statuses', () => {
    expect(parseDomstatsState("Domain: 'a'\n  state.state=4\n  state.reason=1\n")).toBe(4);
    expect(parseDomstatsState('')).toBeNull();
    const by = (s: number) => statusOfState(s);
    expect([DOMAIN_STATE.running, DOMAIN_STATE.blocked, DOMAIN_STATE.paused, DOMAIN_STATE.pmsuspended].map(by)).toEqual(['running', 'running', 'running', 'running']);
    expect(by(DOMAIN_STATE.shutdown)).toBe('stopping');
    expect([DOMAIN_STATE.shutoff, DOMAIN_STATE.crashed, DOMAIN_STATE.nostate].map(by)).toEqual(['stopped', 'stopped', 'stopped']);
  });
});

/**
 * ESNAP_HYPERVISOR, ESNAP_LIBVIRT_URI and ESNAP_LIBVIRT_DC (issue 14): parsed once into the
 * configuration, with the README's defaults, and anything else a ConfigError naming the variable.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('the hypervisor variables', () => {
  it('default to none; libvirt defaults to qemu:///system and the default DC', () => {
    expect(loadConfig({}).hypervisor).toEqual({ kind: 'none' });
    expect(loadConfig({ ESNAP_HYPERVISOR: 'none', ESNAP_LIBVIRT_DC: 'lab' }).hypervisor).toEqual({ kind: 'none' });
    expect(loadConfig({ ESNAP_HYPERVISOR: 'libvirt' }).hypervisor).toEqual({ kind: 'libvirt', uri: 'qemu:///system', dc: null });
    expect(loadConfig({ ESNAP_HYPERVISOR: 'libvirt', ESNAP_LIBVIRT_URI: 'qemu+ssh://root@kvm1/system', ESNAP_LIBVIRT_DC: 'lab' }).hypervisor).toEqual({
      kind: 'libvirt',
      uri: 'qemu+ssh://root@kvm1/system',
      dc: 'lab',
    });
    expect(Object.isFrozen(loadConfig({ ESNAP_HYPERVISOR: 'libvirt' }).hypervisor)).toBe(true);
  });

  it('fails loudly on bad values, naming the variable', () => {
    for (const [env, variable] of [
      [{ ESNAP_HYPERVISOR: 'xen' }, 'ESNAP_HYPERVISOR'],
      [{ ESNAP_HYPERVISOR: 'libvirt', ESNAP_LIBVIRT_URI: 'system' }, 'ESNAP_LIBVIRT_URI'],
      [{ ESNAP_HYPERVISOR: 'libvirt', ESNAP_LIBVIRT_URI: 'qemu:///system --readonly' }, 'ESNAP_LIBVIRT_URI'],
      [{ ESNAP_HYPERVISOR: 'libvirt', ESNAP_LIBVIRT_DC: 'no such dc' }, 'ESNAP_LIBVIRT_DC'],
      [{ ESNAP_HYPERVISOR: 'libvirt', ESNAP_LIBVIRT_DC: '-lab' }, 'ESNAP_LIBVIRT_DC'],
    ] as const) {
      expect(() => loadConfig(env), JSON.stringify(env)).toThrow(ConfigError);
      expect(() => loadConfig(env), JSON.stringify(env)).toThrow(variable);
    }
  });
});

/** Danube's VM status numbers and hostname rule, shared by the VM feature and the libvirt inventory. */
export const VM_STOPPED = 1;
export const VM_RUNNING = 2;
export const VM_STOPPING = 3;
export const VM_NOTREADY = 7;

/** Hostnames (URL of define POST) and aliases. */
export const HOSTNAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const HOSTNAME_MAX = 253;

/**
 * DiskIO for drivers whose disk is a raw image file the test can open (file, btrfs, zfs): only
 * where that file lives differs.
 */
import { open } from 'node:fs/promises';
import type { DiskRef } from '../../src/storage/driver.js';
import type { DiskIO } from './driver-contract.js';

/**
 * Example: `rawImageIO((d) => join(root, d.path))`; `imageOf` may be async (zfs asks the driver).
 */
export function rawImageIO(imageOf: (disk: DiskRef) => string | Promise<string>): DiskIO {
  return {
    async write(disk, offset, data) {
      const fh = await open(await imageOf(disk), 'r+');
      try {
        // Like a block device: a write past the end is a test bug, not a way to grow the disk.
        const { size } = await fh.stat();
        if (offset + data.length > size) throw new RangeError(`write of ${data.length} at ${offset} past the end (${size})`);
        await fh.write(data, 0, data.length, offset);
      } finally {
        await fh.close();
      }
    },
    async read(disk, offset, length) {
      const fh = await open(await imageOf(disk), 'r');
      const buf = Buffer.alloc(length);
      await fh.read(buf, 0, length, offset).finally(() => fh.close());
      return buf;
    },
  };
}

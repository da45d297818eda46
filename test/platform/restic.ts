/** Whether restic (the type 2 backup engine) runs here; null when it does, else why not. */
import { execFile } from 'node:child_process';

export function resticUnavailable(): Promise<string | null> {
  return new Promise((resolve) => {
    execFile('restic', ['version'], (err, stdout) => {
      if (err) resolve(`restic is not installed (apt-get install restic): ${err.message}`);
      else resolve(/restic \d+\.\d+/.test(stdout) ? null : `unexpected restic version output: ${stdout.trim()}`);
    });
  });
}

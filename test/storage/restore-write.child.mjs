// Child of restore-write.test.ts: opens a restore write into a disk through a driver (from dist/),
// and stops where the test kills it with SIGKILL (its whole process group):
//   write:  half the image written aside, then waits;
//   commit: the whole image written, commit() called; qemu-img convert announced on stdout when it starts.
// argv: <dist dir> <qcow2|zfs> <root or dataset> <disk path> <size> <phase>
const [dist, kind, where, path, sizeText, phase] = process.argv.slice(2);
const size = Number(sizeText);
const { NodeCommandRunner } = await import(`${dist}/src/storage/node-runner.js`);
const inner = new NodeCommandRunner();
const runner = {
  run(argv, o) {
    if (argv[0] === 'qemu-img' && argv[1] === 'convert') process.stdout.write('converting\n');
    return inner.run(argv, o);
  },
  spawn: (argv, o) => inner.spawn(argv, o),
  pipe: (a, b, o) => inner.pipe(a, b, o),
};
const driver =
  kind === 'qcow2'
    ? new (await import(`${dist}/src/storage/qcow2/qcow2.driver.js`)).Qcow2Driver({ root: where, runner })
    : new (await import(`${dist}/src/storage/zfs/zfs.driver.js`)).ZfsDriver({ dataset: where, runner });
const w = await driver.openDiskWrite({ path, sizeBytes: size });
const fill = Buffer.alloc(1024 * 1024, 0xee);
const total = phase === 'write' ? size / 2 : size;
for (let off = 0; off < total; off += fill.length) {
  if (!w.stream.write(fill.subarray(0, Math.min(fill.length, total - off)))) await new Promise((r) => w.stream.once('drain', r));
}
if (phase === 'write') {
  await new Promise((r) => w.stream.write(Buffer.alloc(0), r));
  process.stdout.write('written\n');
  setInterval(() => undefined, 1000);
} else {
  w.stream.end();
  await w.commit();
  process.stdout.write('committed\n');
}

/** Placeholder until the es client lands. */
export async function main(_argv: readonly string[]): Promise<number> {
  process.stderr.write('es: not built yet\n');
  return 11;
}

import { InProcessQueue } from '../../src/queue/in-process.queue.js';
import { queueContract } from './queue-contract.js';

queueContract({
  name: 'in-process',
  open: async () => new InProcessQueue(),
  persistent: false,
  exactWithdraw: false,
  db: 'sqlite',
  cleanup: async () => undefined,
});

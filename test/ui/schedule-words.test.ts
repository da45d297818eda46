/** Schedules in words (ui/src/schedule.ts): the common shapes, the zone named, errors for schedules that cannot run. */
import { describe, expect, it } from 'vitest';
import { describeSchedule } from '../../ui/src/schedule.js';

describe('schedules in words', () => {
  it.each([
    ['30 5 * * *', 'Europe/Bratislava', 'every day at 05:30 (Europe/Bratislava)'],
    ['0 3 * * *', 'UTC', 'every day at 03:00 (UTC)'],
    ['15 6,18 * * *', 'UTC', 'every day at 06:15 and 18:15 (UTC)'],
    ['0 * * * *', 'UTC', 'every hour, on the hour (UTC)'],
    ['45 * * * *', 'UTC', 'every hour at minute 45 (UTC)'],
    ['*/15 * * * *', 'UTC', 'every 15 minutes (UTC)'],
    ['* * * * *', 'UTC', 'every minute (UTC)'],
    ['0 */6 * * *', 'UTC', 'every 6 hours at minute 0 (UTC)'],
    ['0 22 * * 1-5', 'Europe/Prague', 'every weekday (Monday to Friday) at 22:00 (Europe/Prague)'],
    ['0 4 * * 0', 'UTC', 'every Sunday at 04:00 (UTC)'],
    ['0 4 * * 7', 'UTC', 'every Sunday at 04:00 (UTC)'],
    ['0 4 * * 1,3,5', 'UTC', 'every Monday, Wednesday and Friday at 04:00 (UTC)'],
    ['0 4 * * 6,0', 'UTC', 'every Saturday and Sunday at 04:00 (UTC)'],
    ['0 1 1 * *', 'UTC', 'on the 1st of every month at 01:00 (UTC)'],
    ['0 1 2,22 * *', 'UTC', 'on the 2nd and 22nd of every month at 01:00 (UTC)'],
    ['0 1 * 6 *', 'UTC', 'custom schedule (UTC)'],
    ['5-10 1 * * *', 'UTC', 'custom schedule (UTC)'],
  ])('%s in %s reads "%s"', (cron, tz, words) => {
    expect(describeSchedule(cron, tz)).toEqual({ text: words, error: false });
  });

  it('shows a schedule that never fires as an error', () => {
    expect(describeSchedule('0 0 31 2 *', 'UTC')).toEqual({ text: 'never fires: no date matches this schedule', error: true });
    expect(describeSchedule('0 0 30 2 *', 'Europe/Bratislava').error).toBe(true);
  });

  it('shows an invalid schedule or zone as an error with the reason', () => {
    expect(describeSchedule('99 3 * * *', 'UTC')).toEqual({ text: 'invalid schedule: Incorrect value in 1. column.', error: true });
    expect(describeSchedule('0 3 * *', 'UTC')).toEqual({ text: 'invalid schedule: Entry has to consist of exactly 5 columns.', error: true });
    expect(describeSchedule('0 3 * * *', 'Mars/Olympus').error).toBe(true);
  });
});

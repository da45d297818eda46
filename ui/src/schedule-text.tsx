/** A schedule in words with its cron beside it; one that cannot run is shown as an error. */
import { describeSchedule } from './schedule.js';

export function ScheduleText({ schedule, tz }: { schedule: string; tz: string }) {
  const w = describeSchedule(schedule, tz);
  return (
    <span class="schedule" data-testid="schedule" data-error={w.error ? 'true' : undefined}>
      <span class={w.error ? 'error-text' : ''} role={w.error ? 'alert' : undefined}>
        {w.error ? 'Error: ' : ''}
        {w.text}
      </span>{' '}
      <code class="muted">{schedule}</code>
    </span>
  );
}

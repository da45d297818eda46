/**
 * Inline SVG icons (emoji and dingbats render as empty boxes where no font has them, e.g. headless
 * Chromium on a server). Decorative: hidden from assistive technology, the text beside says it.
 */
const PATHS = {
  ok: 'M3 8.5l3 3 7-7',
  bad: 'M4 4l8 8M12 4l-8 8',
  warn: 'M8 2l6.5 11.5h-13zM8 6.5v3.5M8 11.8v.4',
  busy: 'M13 8a5 5 0 1 1-1.5-3.5M13 2.5v3h-3',
  info: 'M8 7v5M8 4.2v.4',
  pin: 'M6 2h4l-.5 4 2.5 2.5H4L6.5 6zM8 8.5V14',
  snow: 'M8 1.5v13M2.4 4.8l11.2 6.4M2.4 11.2l11.2-6.4',
  up: 'M4 10l4-4 4 4',
  down: 'M4 6l4 4 4-4',
  sort: 'M5 6l3-3 3 3M5 10l3 3 3-3',
  clock: 'M8 2.5a5.5 5.5 0 1 0 0 11 5.5 5.5 0 0 0 0-11zM8 5v3.2l2.2 1.4',
} as const;

export type IconName = keyof typeof PATHS;

export function Icon({ name, size = 14 }: { name: IconName; size?: number }) {
  return (
    <svg class={`icon icon-${name}`} width={size} height={size} viewBox="0 0 16 16" aria-hidden="true" focusable="false">
      <path d={PATHS[name]} fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" />
    </svg>
  );
}

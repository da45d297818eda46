/**
 * Definition input: every field message (spec 6.1, 6.2), cron messages, esnap's new fields, the
 * predefined defaults (8.2), LIMIT_AUTO retention bounds and the DEFINE_LIMIT (9).
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { addVm, defineRow, setDcSettings } from './fixtures.js';

type Server = TestServer & { cleanup(): Promise<void> };

forEachDb('definitions: validation', (kind) => {
  let s: Server;
  let vm: string;
  const base = '/api/vm/val.test/define/snapshot';
  const ok = { schedule: '0 3 * * *', retention: 5 };

  beforeAll(async () => {
    s = await withServer(kind);
    vm = await addVm(s, 'val.test', { disks: 2 });
  });
  afterAll(() => s.cleanup());
  afterEach(() => setDcSettings(s, {}));

  async function failure(name: string, body: unknown, method = 'POST') {
    const r = await s.req(method, `${base}/${name}`, { body });
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.status).toBe('FAILURE');
    expect(r.body.task_id).toMatch(/^1d1d\d+-/);
    return r.body.result as Record<string, string[]>;
  }

  it('schedule and retention are required for names that are not predefined', async () => {
    const e = await failure('custom', {});
    // Danube printed retention before schedule.
    expect(Object.keys(e)).toEqual(['retention', 'schedule']);
    expect(e).toEqual({ schedule: ['This field is required.'], retention: ['This field is required.'] });
    expect(await failure('custom', { schedule: '', retention: null })).toEqual({
      schedule: ['This field is required.'],
      retention: ['This field is required.'],
    });
  });

  it('cron messages, first failing rule wins, then the length limit', async () => {
    const cases: Array<[string, string[]]> = [
      [' 0 3 * * *', ['Leading nor trailing spaces are allowed.']],
      ['0 3 * * * ', ['Leading nor trailing spaces are allowed.']],
      ['0  3 * * *', ['Use only a single space as a column separator.']],
      ['0\t3 * * *', ['Use only a single space as a column separator.']],
      ['0 3 * *', ['Entry has to consist of exactly 5 columns.']],
      ['0 3 * * * *', ['Entry has to consist of exactly 5 columns.']],
      ['x 3 * * *', ['Incorrect value in 1. column.']],
      ['99 3 * * *', ['Incorrect value in 1. column.']],
      ['0 24 * * *', ['Incorrect value in 2. column.']],
      ['0 3 0 * *', ['Incorrect value in 3. column.']],
      ['0 3 * 13 *', ['Incorrect value in 4. column.']],
      ['0 3 * * mon', ['Incorrect value in 5. column.']],
      ['a'.repeat(101), ['Entry has to consist of exactly 5 columns.', 'Ensure this value has at most 100 characters (it has 101).']],
    ];
    for (const [schedule, messages] of cases) {
      expect(await failure('c', { schedule, retention: 1 }), schedule).toEqual({ schedule: messages });
    }
  });

  it('retention: whole numbers within 0–65536', async () => {
    expect(await failure('r', { ...ok, retention: 'x' })).toEqual({ retention: ['Enter a whole number.'] });
    expect(await failure('r', { ...ok, retention: 1.5 })).toEqual({ retention: ['Enter a whole number.'] });
    expect(await failure('r', { ...ok, retention: -1 })).toEqual({ retention: ['Ensure this value is greater than or equal to 0.'] });
    expect(await failure('r', { ...ok, retention: 65537 })).toEqual({ retention: ['Ensure this value is less than or equal to 65536.'] });
    const zero = await s.req('POST', `${base}/r0`, { body: { ...ok, retention: 0 } });
    expect(zero.status).toBe(201);
    expect((await s.req('POST', `${base}/rmax`, { body: { ...ok, retention: 65536 } })).status).toBe(201);
  });

  it('desc: safe characters, at most 128; null is empty', async () => {
    for (const c of ['<', '>', '%', '$', '&', ';', "'", '"']) {
      expect(await failure('d', { ...ok, desc: `a${c}b` }), c).toEqual({ desc: ['Invalid value.'] });
    }
    expect(await failure('d', { ...ok, desc: 'x'.repeat(129) })).toEqual({ desc: ['Ensure this value has at most 128 characters (it has 129).'] });
    const n = await s.req('POST', `${base}/dnull`, { body: { ...ok, desc: null } });
    expect(n.status).toBe(201);
    expect(n.body.result.desc).toBe('');
    const long = await s.req('POST', `${base}/dlong`, { body: { ...ok, desc: 'ž'.repeat(128) } });
    expect(long.body.result.desc).toBe('ž'.repeat(128));
  });

  it('the name comes from the URL: the name rule, 1–8 characters', async () => {
    expect(await failure('abcdefghi', ok)).toEqual({ name: ['Ensure this value has at most 8 characters (it has 9).'] });
    expect(await failure('-dash', ok)).toEqual({ name: ['Invalid value.'] });
    expect(await failure('_x', ok)).toEqual({ name: ['Invalid value.'] });
    const r = await s.req('POST', `${base}/a.b-c_9`, { body: { ...ok, name: 'ignored' } });
    expect(r.status).toBe(201);
    expect(r.body.result.name).toBe('a.b-c_9');
  });

  it("esnap's fields: tz must be a zone, retention_days a whole number ≥ 1 or null", async () => {
    for (const tz of ['Mars/Olympus', '', null, '+01:00', 5]) {
      expect(await failure('t', { ...ok, tz }), String(tz)).toEqual({ tz: ['Invalid time zone.'] });
    }
    expect(await failure('t', { ...ok, retention_days: 0 })).toEqual({ retention_days: ['Ensure this value is greater than or equal to 1.'] });
    expect(await failure('t', { ...ok, retention_days: 'x' })).toEqual({ retention_days: ['Enter a whole number.'] });
    expect(await failure('t', { ...ok, retention_days: 36501 })).toEqual({ retention_days: ['Ensure this value is less than or equal to 36500.'] });
    const r = await s.req('POST', `${base}/tzok`, { body: { ...ok, tz: 'America/New_York', retention_days: null, catchup: 0 } });
    expect(r.status).toBe(201);
    expect(r.body.result).toMatchObject({ tz: 'America/New_York', retention_days: null, catchup: false });
  });

  it('several field errors come together, in field order (retention before schedule, as Danube)', async () => {
    const e = await failure('toolongname', {
      disk_id: 2,
      desc: '<',
      schedule: '* * *',
      retention: -5,
      tz: 'Nowhere/Town',
      retention_days: 0,
    });
    expect(Object.keys(e)).toEqual(['name', 'desc', 'retention', 'schedule', 'tz', 'retention_days']);
  });

  it('PUT validates what it gets; required fields cannot be emptied', async () => {
    expect((await s.req('POST', `${base}/upd`, { body: ok })).status).toBe(201);
    expect(await failure('upd', { schedule: '', retention: null }, 'PUT')).toEqual({
      schedule: ['This field is required.'],
      retention: ['This field is required.'],
    });
    expect(await failure('upd', { schedule: '1 2 3', tz: 'Bad/Zone' }, 'PUT')).toEqual({
      schedule: ['Entry has to consist of exactly 5 columns.'],
      tz: ['Invalid time zone.'],
    });
    const row = await defineRow(s, vm, 'upd');
    expect(row?.schedule).toBe('0 3 * * *');
  });

  it('a body that is not an object is Invalid data', async () => {
    for (const [method, name] of [
      ['POST', 'arr'],
      ['PUT', 'upd'],
    ] as const) {
      const r = await s.req(method, `${base}/${name}`, { rawBody: '[1,2]', headers: { 'Content-Type': 'application/json' } });
      expect(r.status).toBe(400);
      expect(r.body.result).toEqual({ non_field_errors: ['Invalid data'] });
    }
    expect(await defineRow(s, vm, 'arr')).toBeUndefined();
  });

  it('predefined names get random schedules and retentions 24/30/12/6', async () => {
    const expected: Array<[string, RegExp, number]> = [
      ['hourly', /^(\d+) \* \* \* \*$/, 24],
      ['daily', /^(\d+) (\d+) \* \* \*$/, 30],
      ['weekly', /^(\d+) (\d+) \* \* (\d+)$/, 12],
      ['monthly', /^(\d+) (\d+) (\d+) \* \*$/, 6],
    ];
    for (const [name, re, retention] of expected) {
      const r = await s.req('POST', `${base}/${name}`, { body: {} });
      expect(r.status, name).toBe(201);
      expect(r.body.result.retention).toBe(retention);
      const m = re.exec(r.body.result.schedule);
      expect(m, r.body.result.schedule).not.toBeNull();
      const [minute, hour, third] = m!.slice(1).map(Number);
      expect(minute).toBeGreaterThanOrEqual(0);
      expect(minute).toBeLessThanOrEqual(59);
      if (hour !== undefined) expect(hour).toBeLessThanOrEqual(23);
      if (name === 'weekly') expect(third).toBeLessThanOrEqual(6);
      if (name === 'monthly') {
        expect(third).toBeGreaterThanOrEqual(1);
        expect(third).toBeLessThanOrEqual(28);
      }
    }
  });

  it('predefined defaults are overridable and apply on disk 2 too', async () => {
    const r = await s.req('POST', `${base}/daily`, { body: { disk_id: 2, retention: 3 } });
    expect(r.status).toBe(201);
    expect(r.body.result.retention).toBe(3);
    expect(r.body.result.schedule).toMatch(/^\d+ \d+ \* \* \*$/);
    const bad = await failure('weekly', { disk_id: 2, schedule: 'bad' });
    expect(bad).toEqual({ schedule: ['Entry has to consist of exactly 5 columns.'] });
    // Defaults are for POST only: a PUT does not bring them back.
    const put = await s.req('PUT', `${base}/daily`, { body: { disk_id: 2, desc: 'd' } });
    expect(put.body.result.retention).toBe(3);
  });

  it('VMS_VM_SNAPSHOT_LIMIT_AUTO bounds retention to 1–N, on POST and PUT', async () => {
    await setDcSettings(s, { VMS_VM_SNAPSHOT_LIMIT_AUTO: 10 });
    expect(await failure('la', { ...ok, retention: 0 })).toEqual({ retention: ['Ensure this value is greater than or equal to 1.'] });
    expect(await failure('la', { ...ok, retention: 11 })).toEqual({ retention: ['Ensure this value is less than or equal to 10.'] });
    expect((await s.req('POST', `${base}/la`, { body: { ...ok, retention: 10 } })).status).toBe(201);
    expect(await failure('la', { retention: 11 }, 'PUT')).toEqual({ retention: ['Ensure this value is less than or equal to 10.'] });
    // Predefined defaults are checked like user values: monthly's 6 fits, hourly's 24 does not.
    expect(await failure('hourly', { disk_id: 2 })).toEqual({ retention: ['Ensure this value is less than or equal to 10.'] });
  });

  it('concurrent POSTs: one definition per name, and the limit holds', async () => {
    const race = await addVm(s, 'race.test');
    const path = '/api/vm/race.test/define/snapshot';
    const same = await Promise.all(Array.from({ length: 6 }, () => s.req('POST', `${path}/same`, { body: ok })));
    expect(same.map((r) => r.status).sort()).toEqual([201, 406, 406, 406, 406, 406]);
    await setDcSettings(s, { VMS_VM_SNAPSHOT_DEFINE_LIMIT: 3 });
    const many = await Promise.all(Array.from({ length: 6 }, (_, i) => s.req('POST', `${path}/n${i}`, { body: ok })));
    expect(many.filter((r) => r.status === 201)).toHaveLength(2);
    expect(many.filter((r) => r.status === 400)).toHaveLength(4);
    const n = await s.runtime.ctx.db.selectFrom('snapshot_define').select('id').where('vm_uuid', '=', race).execute();
    expect(n).toHaveLength(3);
  });

  it('VMS_VM_SNAPSHOT_DEFINE_LIMIT caps definitions per VM over all disks, after field checks', async () => {
    const other = await addVm(s, 'lim.test', { disks: 2 });
    await setDcSettings(s, { VMS_VM_SNAPSHOT_DEFINE_LIMIT: 2 });
    const lim = '/api/vm/lim.test/define/snapshot';
    expect((await s.req('POST', `${lim}/a`, { body: ok })).status).toBe(201);
    expect((await s.req('POST', `${lim}/b`, { body: { ...ok, disk_id: 2 } })).status).toBe(201);
    const r = await s.req('POST', `${lim}/c`, { body: ok });
    expect(r.status).toBe(400);
    expect(r.body.status).toBe('FAILURE');
    expect(r.body.result).toEqual({ non_field_errors: ['Maximum number of snapshot definitions reached.'] });
    // Object-level validation runs only without field errors.
    const f = await s.req('POST', `${lim}/c`, { body: { ...ok, retention: 'x' } });
    expect(f.body.result).toEqual({ retention: ['Enter a whole number.'] });
    expect(await defineRow(s, other, 'c')).toBeUndefined();
    // Updates are not capped.
    expect((await s.req('PUT', `${lim}/a`, { body: { desc: 'still fine' } })).status).toBe(200);
    await setDcSettings(s, { VMS_VM_SNAPSHOT_DEFINE_LIMIT: 3 });
    expect((await s.req('POST', `${lim}/c`, { body: ok })).status).toBe(201);
    await setDcSettings(s, { VMS_VM_SNAPSHOT_DEFINE_LIMIT: 0 });
    expect((await s.req('POST', '/api/vm/val.test/define/snapshot/zero', { body: ok })).body.result).toEqual({
      non_field_errors: ['Maximum number of snapshot definitions reached.'],
    });
  });
});

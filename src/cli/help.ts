/**
 * Usage and help texts. USAGE is Danube's es usage (printed on stderr with exit 11); HELP adds
 * what a new user needs, with examples that run as they stand against a fresh `npm start` once
 * ES_API_KEY holds the key it printed (test/cli checks that they do).
 */
import { TABLE_FORMATS } from './table.js';

export const ES_VERSION = '1.3.3';

export const USAGE = `es - Swiss Army Knife for the Danube Cloud API

Usage: es action [/resource] [parameters] [output format]

 action:\t{help|get|create|set|delete|login|logout}
 resource:\t/some/resource/in/api
 parameters:\t-foo baz -bar qux ...
 output format:\t--json (default)
\t\t--csv
\t\t--tabulate
\t\t--tabulate-<tablefmt>

`;

/** The examples of HELP, in an order that works on a fresh server (one per line, no comments). */
export const EXAMPLES: readonly string[] = [
  'es get /vm',
  'es create /vm/web01/define',
  'es create /vm/web01/define/disk/1 -size 1024',
  'es create /vm/web01/snapshot/backup1 -disk_id 1 -note "before upgrade"',
  'es get /vm/web01/snapshot -full --tabulate',
  'es set /vm/web01/snapshot/backup1 -disk_id 1',
  'es create /vm/web01/define/snapshot/daily -disk_id 1 -schedule "30 5 * * *" -retention 30',
  'es get /vm/web01/define/snapshot -full --csv',
  'es delete /vm/web01/snapshot/backup1 -disk_id 1',
  'es help /vm/web01/snapshot',
  'es set /accounts/user/admin -password "choose-a-password"',
  'es login -username admin -password "choose-a-password"',
  'es logout',
];

export const HELP = `${USAGE}Actions:
  get               GET: show or list (parameters go into the query string)
  create, post      POST: create (parameters go into a JSON body)
  set, put          PUT: change, roll back, synchronise
  delete            DELETE
  help, options     OPTIONS: what a resource is for
  login, logout     -username <u> -password <p>; the token is kept in $TMPDIR/esdc.session
  -d, --debug       (first) also print the command and the request and answer headers

Parameters:
  -name value       a string: -disk_id 1 sends "1" (the server converts)
  -name             alone, or followed by another -key: true
  true false null   (any case) JSON true, false, null
  json::<text>      parsed JSON, e.g. -snapnames json::["a","b"]; json::-1 for a negative number
  file::<path>      the contents of a file, e.g. -note file::note.txt
  -dc <name>        the datacenter to work in
  -api-key <key>    an API key for this call (instead of ES_API_KEY)

Environment:
  ES_API_URL        the API (default http://127.0.0.1:8000/api)
  ES_API_KEY        API key, sent as ES-API-KEY; esnap serve prints the admin's on first start
  ES_TIMEOUT        seconds without an answer before giving up (default: wait)
  ES_SSL_VERIFY     0 accepts any TLS certificate (default: verify, unlike Danube's es)
  ES_CA_FILE        PEM file of a CA to trust besides the system's
  NO_COLOR          no colour on a terminal

Examples, in order, against a fresh npm start (export ES_API_KEY=<the key it printed> first):
${EXAMPLES.map((e) => `  ${e}`).join('\n')}

A create, delete or rollback waits for its task and prints its final result.

Exit codes: 0 status < 400, 1 status 4xx, 2 status >= 500, 3 connection problem, 4 login gave
no token, 5 interrupted (the task goes on), 11 bad action, 12 missing resource, 13 bad format.
Table formats for --tabulate-<fmt>: ${TABLE_FORMATS.join(', ')}; --csv is ;-separated.
`;

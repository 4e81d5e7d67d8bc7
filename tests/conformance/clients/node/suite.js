#!/usr/bin/env node
// Conformance suite for the Node `etcd3` client (npm), run by tests/conformance/run.
//
//   node suite.js --list                # scenario names, one a line
//   node suite.js HOST:PORT SCENARIO    # the scenario's transcript on stdout
//
// One line per observable result; `run` diffs etcd's transcript against oxcd's after its
// normalization of ids/terms (revisions are never normalized). When the server answers
// gRPC Unimplemented the scenario stops with a last line `UNIMPLEMENTED <what>`, which
// `run` records as "not yet supported". Each scenario uses its own key prefix `js/<name>/`.
'use strict';
const fs = require('fs');
const { Etcd3, GRPCNotImplementedError, Range } = require('etcd3');

// The endpoint under test (HOST:PORT), for scenarios that open clients of their own.
let ENDPOINT = '127.0.0.1:2379';

class Unimplemented extends Error {}

const out = (...parts) => console.log(parts.join(' '));
const s = b => JSON.stringify(b === undefined || b === null ? b : Buffer.from(b).toString());
// JSON-like, so that run's normalize() rewrites the ids and the raft term.
const hdr = h => h ? `{"cluster_id":${h.cluster_id},"member_id":${h.member_id},"revision":${h.revision},"raft_term":${h.raft_term}}` : 'no-header';
const kv = k => `kv key=${s(k.key)} value=${s(k.value)} create=${k.create_revision} mod=${k.mod_revision} version=${k.version} lease=${k.lease}`;

function isUnimplemented(e) {
  return e instanceof GRPCNotImplementedError || (e && e.code === 12);
}

// Run one call and print its result; errors are part of the transcript, except
// Unimplemented, which stops the scenario.
async function call(label, fn, show) {
  let r;
  try {
    r = await fn();
  } catch (e) {
    if (isUnimplemented(e)) {
      out('UNIMPLEMENTED', label, `(${e.constructor.name})`);
      throw new Unimplemented();
    }
    out(label, 'error', e.constructor.name, JSON.stringify(e.message));
    return undefined;
  }
  show(r);
  return r;
}

const showRange = label => r => {
  out(label, 'header', hdr(r.header), `count=${r.count}`, `more=${r.more}`, `n=${r.kvs.length}`);
  for (const k of r.kvs) out('  ', kv(k));
};
const showPut = label => r => out(label, 'header', hdr(r.header), 'prev=' + (r.prev_kv ? kv(r.prev_kv) : 'none'));
const showDel = label => r => {
  out(label, 'header', hdr(r.header), `deleted=${r.deleted}`, `prev_kvs=${r.prev_kvs.length}`);
  for (const k of r.prev_kvs) out('   prev', kv(k));
};
function printTxn(indent, r) {
  out(`${indent}header`, hdr(r.header), `succeeded=${r.succeeded}`, `responses=${r.responses.length}`);
  for (const x of r.responses) {
    if (x.response_put) out(`${indent}  put header`, hdr(x.response_put.header));
    else if (x.response_range) {
      out(`${indent}  range header`, hdr(x.response_range.header), `count=${x.response_range.count}`);
      for (const k of x.response_range.kvs) out(`${indent}    `, kv(k));
    } else if (x.response_delete_range) out(`${indent}  delete header`, hdr(x.response_delete_range.header), `deleted=${x.response_delete_range.deleted}`);
    else if (x.response_txn) { out(`${indent}  txn:`); printTxn(indent + '    ', x.response_txn); }
  }
}
const showTxn = label => r => { out(label); printTxn('  ', r); };

const SCENARIOS = {
  async kv_put_get(c, p) {
    await call('put a', () => c.put(p + 'a').value('1').exec(), showPut('put a'));
    await call('put a getPrevious', () => c.put(p + 'a').value('2').getPrevious(), r => out('put a getPrevious', r && r.key ? kv(r) : 'none'));
    await call('put b getPrevious (new)', () => c.put(p + 'b').value('bee').getPrevious(), r => out('put b getPrevious (new)', r && r.key ? kv(r) : 'none'));
    await call('put c empty', () => c.put(p + 'c').value('').exec(), showPut('put c empty'));
    await call('get a string', () => c.get(p + 'a').string(), r => out('get a string', s(r)));
    await call('get missing string', () => c.get(p + 'missing').string(), r => out('get missing string', String(r)));
    await call('get a exists', () => c.get(p + 'a').exists(), r => out('get a exists', r));
    await call('get a exec', () => c.get(p + 'a').exec(), showRange('get a exec'));
    await call('get serializable', () => c.get(p + 'a').serializable(true).exec(), showRange('get serializable'));
    await call('getAll prefix strings', () => c.getAll().prefix(p).strings(), r => out('getAll prefix strings', JSON.stringify(r)));
    await call('getAll prefix keys', () => c.getAll().prefix(p).keys(), r => out('getAll prefix keys', JSON.stringify(r)));
    await call('getAll prefix none', () => c.getAll().prefix(p + 'zz').exec(), showRange('getAll prefix none'));
    await call('getAll range a..c', () => c.getAll().inRange({ start: p + 'a', end: p + 'c' }).exec(), showRange('getAll range a..c'));
    await call('getAll range a..a', () => c.getAll().inRange({ start: p + 'a', end: p + 'a' }).exec(), showRange('getAll range a..a'));
  },

  async kv_range_options(c, p) {
    // No ties: KEY a b c d; CREATE c a d b; MODIFY a c d b; VERSION a1 c2 b3 d4; VALUE b d c a
    for (const [k, v] of [['c', 'mu'], ['a', 'zeta'], ['d', 'delta'], ['b', 'alpha'], ['d', 'delta2'], ['b', 'alpha2'],
      ['d', 'delta3'], ['c', 'mu2'], ['d', 'delta4'], ['b', 'alpha3']]) await c.put(p + k).value(v);
    for (const t of ['Key', 'Create', 'Mod', 'Version', 'Value']) {
      for (const o of ['Ascend', 'Descend', 'None']) {
        const l = `sort ${t} ${o}`;
        await call(l, () => c.getAll().prefix(p).sort(t, o).exec(), showRange(l));
      }
    }
    for (const n of [0, 1, 3, 4, 5]) {
      const l = `limit ${n}`;
      await call(l, () => c.getAll().prefix(p).limit(n).exec(), showRange(l));
    }
    await call('limit 2 sort Mod Descend keys', () => c.getAll().prefix(p).limit(2).sort('Mod', 'Descend').keys(), r => out('limit 2 sort Mod Descend keys', JSON.stringify(r)));
    await call('count', () => c.getAll().prefix(p).count(), r => out('count', r));
    await call('count none', () => c.getAll().prefix(p + 'none').count(), r => out('count none', r));
    await call('keys_only exec', () => c.getAll().prefix(p).options({ keys_only: true }).exec(), showRange('keys_only exec'));
    await call('count_only exec', () => c.getAll().prefix(p).options({ count_only: true }).exec(), showRange('count_only exec'));
    const cmod = Number((await c.get(p + 'c').exec()).kvs[0].mod_revision);
    await call('minModRevision', () => c.getAll().prefix(p).minModRevision(cmod).exec(), showRange('minModRevision'));
    await call('maxCreateRevision', () => c.getAll().prefix(p).maxCreateRevision(cmod - 6).exec(), showRange('maxCreateRevision'));
  },

  async kv_revisions(c, p) {
    const base = Number((await c.get(p + 'probe').exec()).header.revision);
    out('base revision', base);
    for (const v of ['v1', 'v2', 'v3']) await c.put(p + 'k').value(v);
    await c.delete().key(p + 'k');
    await c.put(p + 'k').value('v4');
    for (let d = 0; d < 6; d++) {
      const l = `rev base+${d}`;
      await call(l, () => c.get(p + 'k').revision(base + d).exec(), showRange(l));
    }
    await call('prefix rev base+2', () => c.getAll().prefix(p).revision(base + 2).exec(), showRange('prefix rev base+2'));
  },

  async kv_delete(c, p) {
    for (const x of 'abcde') await c.put(p + x).value(x + x);
    const outside = p.slice(0, -1) + 'x';
    await c.put(outside).value('outside');
    await call('delete a', () => c.delete().key(p + 'a').exec(), showDel('delete a'));
    await call('delete a again', () => c.delete().key(p + 'a').exec(), showDel('delete a again'));
    await call('delete b getPrevious', () => c.delete().key(p + 'b').getPrevious(), r => out('delete b getPrevious', r.map(kv).join('; ')));
    await call('delete range c..e prev', () => c.delete().inRange({ start: p + 'c', end: p + 'e' }).options({ prev_kv: true }).exec(), showDel('delete range c..e prev'));
    await call('delete prefix', () => c.delete().prefix(p).exec(), showDel('delete prefix'));
    await call('getAll after', () => c.getAll().prefix(p).exec(), showRange('getAll after'));
    await call('outside survives', () => c.get(outside).string(), r => out('outside survives', s(r)));
  },

  async txn(c, p) {
    await c.put(p + 'k').value('v');
    await call('txn all compares true', () => c.if(p + 'k', 'Value', '==', 'v').and(p + 'k', 'Version', '==', 1)
      .and(p + 'none', 'Create', '==', 0).and(p + 'k', 'Mod', '>', 0).and(p + 'k', 'Value', '!=', 'w').and(p + 'k', 'Version', '<', 5)
      .then(c.put(p + 'ok').value('yes'), c.get(p + 'k'), c.delete().key(p + 'nothing'))
      .else(c.put(p + 'fail').value('no')).commit(), showTxn('txn all compares true'));
    await call('txn value mismatch', () => c.if(p + 'k', 'Value', '==', 'other')
      .then(c.put(p + 'ok2').value('yes'))
      .else(c.put(p + 'fail').value('no'), c.getAll().prefix(p)).commit(), showTxn('txn value mismatch'));
    await call('txn create mismatch, empty else', () => c.if(p + 'k', 'Create', '==', 0).then(c.put(p + 'x').value('1')).commit(),
      showTxn('txn create mismatch, empty else'));
    await call('txn mod greater', () => c.if(p + 'k', 'Mod', '>', 1000000).else(c.delete().key(p + 'fail')).commit(), showTxn('txn mod greater'));
    await call('txn duplicate key', () => c.if(p + 'k', 'Version', '>', 0).then(c.put(p + 'dup').value('1'), c.put(p + 'dup').value('2')).commit(),
      showTxn('txn duplicate key'));
    await call('getAll prefix', () => c.getAll().prefix(p).exec(), showRange('getAll prefix'));
  },

  async compaction(c, p) {
    await c.put(p + 'k').value('v1');
    await c.put(p + 'k').value('v2');
    const r = Number((await c.put(p + 'k').value('v3').exec()).header.revision);
    await call('compact r-1', () => c.kv.compact({ revision: r - 1 }), x => out('compact r-1 header', hdr(x.header)));
    await call('get rev r-2', () => c.get(p + 'k').revision(r - 2).exec(), showRange('get rev r-2'));
    await call('get rev r-1', () => c.get(p + 'k').revision(r - 1).exec(), showRange('get rev r-1'));
    await call('get rev future', () => c.get(p + 'k').revision(r + 1000).exec(), showRange('get rev future'));
    await call('compact r-2 again', () => c.kv.compact({ revision: r - 2 }), x => out('compact r-2 header', hdr(x.header)));
    await call('compact future', () => c.kv.compact({ revision: r + 1000 }), x => out('compact future header', hdr(x.header)));
    await call('compact r physical', () => c.kv.compact({ revision: r, physical: true }), x => out('compact r physical header', hdr(x.header)));
    await call('get current', () => c.get(p + 'k').exec(), showRange('get current'));
  },

  async errors(c, p) {
    await call('put empty key', () => c.put('').value('v').exec(), showPut('put empty key'));
    await call('get empty key', () => c.get('').exec(), showRange('get empty key'));
    await call('delete empty key', () => c.delete().key('').exec(), showDel('delete empty key'));
    await call('put missing lease', () => c.put(p + 'k').value('v').lease(1234).exec(), showPut('put missing lease'));
    await call('put ignoreLease on missing key', () => c.put(p + 'k').value('v').ignoreLease().exec(), showPut('put ignoreLease on missing key'));
    await call('getAll after', () => c.getAll().prefix(p).exec(), showRange('getAll after'));
  },

  async watch(c, p) {
    const events = [];
    let watcher;
    await call('watch create', () => new Promise((resolve, reject) => {
      watcher = c.watch().prefix(p).withPreviousKV().watcher();
      // The client reconnects on stream errors forever; the error surfaces as 'disconnected'.
      watcher.once('disconnected', reject);
      watcher.once('error', reject);
      watcher.once('connected', resolve);
    }), () => out('watch created'));
    if (!watcher) return;
    const done = new Promise(resolve => {
      watcher.on('data', res => { for (const e of res.events) events.push(e); if (events.length >= 4) resolve(); });
      setTimeout(resolve, 10000);
    });
    await c.put(p + 'a').value('1');
    await c.put(p + 'a').value('2');
    await c.put(p.slice(0, -1) + '-outside').value('x');
    await c.delete().key(p + 'a');
    await c.put(p + 'b').value('3');
    await done;
    for (const e of events) out('event', e.type, kv(e.kv), 'prev=' + (e.prev_kv ? kv(e.prev_kv) : 'none'));
    await watcher.cancel();
    const bmod = Number((await c.get(p + 'b').exec()).kvs[0].mod_revision);
    const replay = [];
    const w2 = await c.watch().prefix(p).startRevision(String(bmod - 1)).create();
    await new Promise(resolve => {
      w2.on('data', res => { for (const e of res.events) replay.push(e); if (replay.length >= 2) resolve(); });
      setTimeout(resolve, 10000);
    });
    for (const e of replay) out('replay', e.type, kv(e.kv));
    await w2.cancel();
  },

  async lease(c, p) {
    const lease = c.lease(60, { autoKeepAlive: false });
    lease.on('lost', () => {});
    const id = await call('lease grant', () => lease.grant(), r => out('lease granted id_nonempty', String(r).length > 0));
    if (id === undefined) return;
    await call('lease put', () => lease.put(p + 'k').value('v').exec(), showPut('lease put'));
    await call('get key lease', () => c.get(p + 'k').exec(), r => out('key lease matches', r.kvs[0].lease === String(id)));
    await call('keepaliveOnce', () => lease.keepaliveOnce(), r => out('keepaliveOnce TTL', r.TTL));
    await call('revoke', () => lease.revoke(), () => out('revoked'));
    await call('get after revoke', () => c.getAll().prefix(p).exec(), showRange('get after revoke'));
    await call('leaseRevoke again', () => c.leaseClient.leaseRevoke({ ID: id }), r => out('revoke again header', hdr(r.header)));
  },

  async election(c, p) {
    const election = c.election(p + 'e', 60);
    const campaign = election.campaign('candidate-1');
    await call('campaign', () => campaign.wait(), () => out('elected'));
    await call('leader', () => election.leader(), r => out('leader', s(r)));
    await call('proclaim', () => campaign.proclaim('candidate-1b'), () => out('proclaimed'));
    await call('leader after proclaim', () => election.leader(), r => out('leader after proclaim', s(r)));
    await call('resign', () => campaign.resign(), () => out('resigned'));
    await call('leader after resign', () => election.leader(), r => out('leader after resign', String(r)));
  },

  // Users, a role with a prefix permission, auth enable; clients logging in with a user name
  // and password (etcd3's `auth` option: Authenticate, then the token on every call).
  async auth_user_password(c, p) {
    const hosts = `http://${ENDPOINT}`;
    const step = (label, fn) => call(label, fn, () => out(label, 'ok'));
    const names = users => users.map(u => u.name).sort().join(',');
    await step('enable without root', () => c.auth.authEnable());
    await step('user add root', () => c.user('root').create('rootpw'));
    await step('grant root', () => c.user('root').addRole('root'));
    await step('role add', () => c.role('jsrole').create());
    await step('grant prefix', () => c.role('jsrole').grant({ permission: 'Readwrite', range: Range.prefix(p) }));
    await step('grant read key', () => c.role('jsrole').grant({ permission: 'Read', key: p.slice(0, -1) + '-conf' }));
    await call('role permissions', () => c.role('jsrole').permissions(),
      r => out('role permissions', r.map(x => `${x.permission}:${s(x.range.start)}..${s(x.range.end)}`).sort().join(' ')));
    await step('user add', () => c.user('jsuser').create('jspw'));
    await step('grant role', () => c.user('jsuser').addRole('jsrole'));
    await step('enable', () => c.auth.authEnable());
    try {
      const bad = new Etcd3({ hosts, auth: { username: 'jsuser', password: 'wrong' } });
      await call('wrong password', () => bad.get(p + 'k').string(), r => out('wrong password answered', s(r)));
      bad.close();
      const nobody = new Etcd3({ hosts, auth: { username: 'nobody', password: 'pw' } });
      await call('unknown user', () => nobody.get(p + 'k').string(), r => out('unknown user answered', s(r)));
      nobody.close();
      const u = new Etcd3({ hosts, auth: { username: 'jsuser', password: 'jspw' } });
      await call('put own prefix', () => u.put(p + 'k').value('v').exec(), showPut('put own prefix'));
      await call('get own prefix', () => u.getAll().prefix(p).exec(), showRange('get own prefix'));
      await call('put outside', () => u.put('js/elsewhere').value('v').exec(), showPut('put outside'));
      await call('get outside', () => u.get('js/elsewhere').exec(), showRange('get outside'));
      await call('get read-only key', () => u.get(p.slice(0, -1) + '-conf').exec(), showRange('get read-only key'));
      await call('put read-only key', () => u.put(p.slice(0, -1) + '-conf').value('x').exec(), showPut('put read-only key'));
      await call('delete prefix wider than own', () => u.delete().prefix('js/').exec(), showDel('delete prefix wider than own'));
      await call('txn reading outside', () => u.if(p + 'k', 'Value', '==', 'v').then(u.get('js/elsewhere')).commit(),
        showTxn('txn reading outside'));
      await call('user list as user', () => u.getUsers(), r => out('user list', names(r)));
      await call('anonymous put', () => c.put(p + 'anon').value('v').exec(), showPut('anonymous put'));
      u.close();
    } finally {
      const root = new Etcd3({ hosts, auth: { username: 'root', password: 'rootpw' } });
      await call('user list as root', () => root.getUsers(), r => out('user list', names(r)));
      await step('delete root while enabled', () => root.user('root').delete());
      await step('disable', () => root.auth.authDisable());
      root.close();
      await call('delete keys', () => c.delete().prefix(p).exec(), showDel('delete keys'));
      await step('user delete', () => c.user('jsuser').delete());
      await step('root delete', () => c.user('root').delete());
      await step('role delete', () => c.role('jsrole').delete());
      await step('root role delete', () => c.role('root').delete());
    }
  },

  // TLS (run with CONFORMANCE_PKI set, against servers with --client-cert-auth): a CA and a
  // client certificate; then no client certificate, another CA's client certificate, a CA
  // that did not sign the server. Refusals are shown as the client's error class: the TLS
  // alert texts are the TLS libraries', not the servers' behaviour.
  async tls_client_cert(_c, p) {
    const pki = process.env.CONFORMANCE_PKI;
    const file = name => fs.readFileSync(`${pki}/${name}`);
    const hosts = `https://${ENDPOINT}`;
    const client = credentials => new Etcd3({
      hosts, credentials,
      // One attempt: a refused handshake is the result, not something to retry.
      faultHandling: { global: require('cockatiel').Policy.noop, host: () => require('cockatiel').Policy.noop },
      defaultCallOptions: ctx => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }),
    });
    const good = client({ rootCertificate: file('ca.pem'), privateKey: file('client-key.pem'), certChain: file('client.pem') });
    await call('put', () => good.put(p + 'k').value('v1').exec(), showPut('put'));
    await call('get', () => good.get(p + 'k').exec(), showRange('get'));
    good.close();
    const refused = async (label, credentials) => {
      const x = client(credentials);
      try {
        await x.get(p + 'k').string();
        out(label, 'answered');
      } catch (e) {
        out(label, 'refused', e.constructor.name);
      }
      x.close();
    };
    await refused('no client certificate', { rootCertificate: file('ca.pem') });
    await refused('other CA client certificate', { rootCertificate: file('ca.pem'), privateKey: file('other-key.pem'), certChain: file('other.pem') });
    await refused('CA that did not sign the server', { rootCertificate: file('other-ca.pem'), privateKey: file('client-key.pem'), certChain: file('client.pem') });
  },
};

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--list') {
    for (const name of Object.keys(SCENARIOS)) console.log(name);
    return 0;
  }
  const [endpoint, name] = args;
  if (!SCENARIOS[name]) { console.error(`unknown scenario ${name}`); return 2; }
  ENDPOINT = endpoint;
  const c = new Etcd3({ hosts: `http://${endpoint}` });
  try {
    await SCENARIOS[name](c, `js/${name}/`);
  } catch (e) {
    if (!(e instanceof Unimplemented)) out('scenario aborted', e.constructor.name, JSON.stringify(e.message));
  }
  c.close();
  return 0;
}

main().then(code => process.exit(code), e => { console.error(e); process.exit(1); });

// hookmesh console. Everything shown comes from the REST API of the pod that served this file;
// every value is put in the page as text (createTextNode, textContent), never as markup, because
// payloads and headers are whatever a webhook sender chose to send.
'use strict';

(() => {
  const PAGE_SIZE = 25;
  const LIVE_MS = 5000;
  const COUNT_CAP = 5000;
  const EVENT_STATUSES = ['pending', 'delivered', 'partial', 'failed', 'dead_letter', 'unrouted'];
  const DELIVERY_STATUSES = ['pending', 'in_flight', 'success', 'retrying', 'failed', 'dead_letter'];
  const RETRYABLE = ['failed', 'dead_letter'];
  const EVENT_FILTERS = ['namespace', 'source', 'status', 'event_type', 'endpoint', 'from', 'to',
    'signature_valid', 'search'];
  const DELIVERY_FILTERS = ['namespace', 'endpoint', 'status', 'event_id', 'from', 'to'];

  const session = { current: null };
  let timers = [];

  // ---- DOM --------------------------------------------------------------------------------

  /** An element with attributes and children; strings become text nodes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  const main = () => document.getElementById('main');

  function render(title, ...children) {
    const heading = h('h1', { tabindex: '-1' }, title);
    main().replaceChildren(heading, ...children.flat(Infinity).filter(Boolean));
    document.title = `${title} · hookmesh console`;
    heading.focus();
  }

  function say(message) {
    const s = document.getElementById('status');
    s.textContent = message;
    clearTimeout(say.timer);
    say.timer = setTimeout(() => { s.textContent = ''; }, 6000);
  }

  /** A status word as a badge; the class is built only from known letters. */
  function badge(status) {
    const word = String(status ?? 'none');
    return h('span', { class: `badge st-${word.replace(/[^a-z_]/g, '')}` }, word.replace(/_/g, ' '));
  }

  function when(iso) {
    if (!iso) return h('span', { class: 'muted' }, '—');
    const d = new Date(iso);
    return h('time', { datetime: iso, title: iso }, Number.isNaN(d.getTime()) ? iso : d.toLocaleString());
  }

  function table(headers, rows, empty) {
    if (!rows.length) return h('p', { class: 'muted' }, empty);
    return h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows)));
  }

  function meta(pairs) {
    return h('dl', { class: 'meta' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  function canWrite() {
    return session.current && session.current.role === 'write';
  }

  function confirmDialog(title, text, action, danger) {
    return new Promise((resolve) => {
      const yes = h('button', { type: 'button', class: danger ? 'danger' : 'primary', value: 'yes' }, action);
      const no = h('button', { type: 'button', value: 'no' }, 'Cancel');
      const d = h('dialog', { 'aria-labelledby': 'dialog-title' },
        h('h2', { id: 'dialog-title' }, title), h('p', {}, text), h('div', { class: 'actions' }, yes, no));
      const close = (answer) => { d.close(); d.remove(); resolve(answer); };
      yes.addEventListener('click', () => close(true));
      no.addEventListener('click', () => close(false));
      d.addEventListener('cancel', (e) => { e.preventDefault(); close(false); });
      document.body.append(d);
      d.showModal();
      no.focus();
    });
  }

  // ---- API --------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = body && body.code;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = session.current ? session.current.csrf_token : '';
    const init = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = { message: text }; }
    if (resp.status === 401 && path.startsWith('/api/')) {
      session.current = null;
      signInPage('Your session ended; sign in again.');
      throw new ApiError(resp.status, data);
    }
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    const s = q.toString();
    return s ? `?${s}` : '';
  }

  /** A page body for a failed call, with the API's code. */
  function failure(e) {
    if (e.status === 401) return null;
    return h('p', { class: 'error', role: 'alert' }, `${e.message}${e.code ? ` (${e.code})` : ''}`);
  }

  async function guarded(work) {
    try {
      await work();
    } catch (e) {
      const f = failure(e);
      if (f) say(f.textContent);
    }
  }

  // ---- session ----------------------------------------------------------------------------

  function signedIn(s) {
    session.current = s;
    document.getElementById('nav').hidden = false;
    document.getElementById('who').hidden = false;
    const scope = s.namespace ? `namespace ${s.namespace}` : 'all namespaces';
    document.getElementById('who-text').textContent = `${s.key_id} · ${s.role} · ${scope}`;
  }

  function signInPage(message) {
    stopTimers();
    document.getElementById('nav').hidden = true;
    document.getElementById('who').hidden = true;
    const key = h('input', { type: 'password', id: 'key', name: 'key', autocomplete: 'off', required: true });
    const problem = h('p', { class: 'error', role: 'alert' }, message || '');
    const form = h('form', { class: 'card signin', method: 'post', action: '/console/session' },
      h('p', {}, 'Sign in with a hookmesh API key. A read key can look; a write key can also replay, retry and delete.'),
      h('label', { for: 'key' }, 'API key'), key,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Sign in')),
      problem);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const s = await api('POST', '/console/session', { key: key.value });
        key.value = '';
        signedIn(s);
        if (!location.hash.startsWith('#/')) location.hash = '#/events';
        else route();
      } catch (err) {
        problem.textContent = err.status === 401 ? 'That key is not valid.' : err.message;
        key.focus();
      }
    });
    render('Sign in', form);
    key.focus();
  }

  async function signOut() {
    try { await api('DELETE', '/console/session'); } catch (_) { /* signed out either way */ }
    session.current = null;
    signInPage('Signed out.');
  }

  // ---- routing ----------------------------------------------------------------------------

  function stopTimers() {
    for (const t of timers) clearInterval(t);
    timers = [];
  }

  function every(ms, f) {
    timers.push(setInterval(f, ms));
  }

  const routes = [
    [/^#\/events\/(evt_[0-9A-Za-z]{26})$/, (m) => eventPage(m[1])],
    [/^#\/events(?:\?(.*))?$/, (m) => eventsPage(new URLSearchParams(m[1] || ''))],
    [/^#\/deliveries(?:\?(.*))?$/, (m) => deliveriesPage(new URLSearchParams(m[1] || ''))],
    [/^#\/endpoints$/, () => endpointsPage()],
    [/^#\/sources$/, () => sourcesPage()],
    [/^#\/subscriptions$/, () => subscriptionsPage()],
  ];

  function route() {
    if (!session.current) return;
    const hash = location.hash || '#/events';
    if (!hash.startsWith('#/')) return; // the skip link
    stopTimers();
    for (const a of document.querySelectorAll('nav a')) {
      const here = hash.startsWith(a.getAttribute('href'));
      if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    for (const [re, page] of routes) {
      const m = hash.match(re);
      if (m) { guarded(() => page(m)); return; }
    }
    render('Not found', h('p', {}, 'No such page. '), h('a', { href: '#/events' }, 'Go to events'));
  }

  // ---- shared pieces ----------------------------------------------------------------------

  const names = (list) => list.map((x) => `${x.namespace}/${x.name}`);

  function select(id, label, options, value) {
    return [h('label', { for: id }, label), h('select', { id, name: id },
      options.map(([v, t]) => h('option', { value: v, selected: v === value }, t)))];
  }

  function text(id, label, value, placeholder) {
    return [h('label', { for: id }, label),
      h('input', { type: 'text', id, name: id, value: value || '', placeholder: placeholder || '' })];
  }

  /** datetime-local shows local time; the API takes RFC 3339. */
  function timeInput(id, label, value) {
    let local = '';
    if (value) {
      const d = new Date(value);
      if (!Number.isNaN(d.getTime())) {
        local = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
      }
    }
    return [h('label', { for: id }, label), h('input', { type: 'datetime-local', id, name: id, value: local })];
  }

  function statusBoxes(legend, all, chosen) {
    return h('fieldset', {}, h('legend', {}, legend), all.map((s) => h('label', {},
      h('input', { type: 'checkbox', name: 'status', value: s, checked: chosen.includes(s) }), s.replace(/_/g, ' '))));
  }

  /** The filters of a form, as the API's query parameters. */
  function formFilters(form, keys) {
    const f = {};
    const data = new FormData(form);
    for (const k of keys) {
      if (k === 'status') {
        const s = data.getAll('status');
        if (s.length) f.status = s.join(',');
        continue;
      }
      let v = data.get(k);
      if (v === null || v === '') continue;
      if (k === 'from' || k === 'to') v = new Date(v).toISOString();
      f[k] = String(v).trim();
    }
    return f;
  }

  function pick(params, keys) {
    const f = {};
    for (const k of keys) if (params.get(k)) f[k] = params.get(k);
    return f;
  }

  /** Older/newer paging over the API's cursor; `back` holds the cursors of the pages before. */
  function pager(base, filters, pagination, params) {
    const back = (params.get('back') || '').split(' ').filter(Boolean);
    const here = params.get('cursor') || '';
    const newer = h('button', { type: 'button', disabled: !here }, 'Newer');
    newer.addEventListener('click', () => {
      const prev = back.pop() || '';
      location.hash = base + query({ ...filters, cursor: prev === '-' ? '' : prev, back: back.join(' ') });
    });
    const older = h('button', { type: 'button', disabled: !pagination.has_more }, 'Older');
    older.addEventListener('click', () => {
      location.hash = base + query({ ...filters, cursor: pagination.next_cursor, back: [...back, here || '-'].join(' ') });
    });
    return h('nav', { class: 'pager', 'aria-label': 'Pages' }, newer, older);
  }

  function partial(page) {
    return page.partial ? h('p', { class: 'error', role: 'alert' },
      `Some pods did not answer: ${(page.missing_peers || []).join(', ')}. This is what the others hold.`) : null;
  }

  // ---- events -----------------------------------------------------------------------------

  async function eventsPage(params) {
    const filters = pick(params, EVENT_FILTERS);
    const [sources, endpoints] = await Promise.all([api('GET', '/api/v1/sources'), api('GET', '/api/v1/endpoints')]);
    const namespaces = [...new Set([...sources.data, ...endpoints.data].map((x) => x.namespace))].sort();
    const form = h('form', { class: 'card filters', role: 'search', 'aria-label': 'Filter events' },
      h('div', {}, select('namespace', 'Namespace', [['', 'Any'], ...namespaces.map((n) => [n, n])], filters.namespace)),
      h('div', {}, select('source', 'Source', [['', 'Any'], ...names(sources.data).map((n) => [n, n])], filters.source)),
      h('div', {}, text('event_type', 'Event type (glob)', filters.event_type, 'order.*')),
      h('div', {}, select('endpoint', 'Endpoint', [['', 'Any'], ...names(endpoints.data).map((n) => [n, n])], filters.endpoint)),
      h('div', {}, timeInput('from', 'Received from', filters.from)),
      h('div', {}, timeInput('to', 'Received to', filters.to)),
      h('div', {}, select('signature_valid', 'Signature', [['', 'Any'], ['true', 'Valid'], ['false', 'Invalid']], filters.signature_valid)),
      h('div', {}, text('search', 'Search: evt_ id prefix or payload text', filters.search)),
      statusBoxes('Status', EVENT_STATUSES, (filters.status || '').split(',')),
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary' }, 'Apply filters'),
        h('button', { type: 'button', onclick: () => { location.hash = '#/events'; } }, 'Clear')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      location.hash = '#/events' + query(formFilters(form, EVENT_FILTERS));
    });

    const cursor = params.get('cursor');
    const page = await api('GET', '/api/v1/events' + query({ ...filters, limit: PAGE_SIZE, cursor }));
    const rows = h('tbody', {});
    const fill = (data) => rows.replaceChildren(...data.map(eventRow));
    fill(page.data);
    const list = page.data.length ? h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'muted' }, 'Newest first'),
      h('thead', {}, h('tr', {}, ['Received', 'Event', 'Source', 'Type', 'Status', 'Deliveries', 'Signature']
        .map((t) => h('th', { scope: 'col' }, t)))), rows))
      : h('p', { class: 'muted' }, 'No events match these filters.');

    const live = h('input', { type: 'checkbox', id: 'live', checked: !cursor, disabled: !!cursor });
    const tools = h('div', { class: 'actions' }, h('label', { for: 'live', class: 'inline' }, live, ' Live: show new events as they arrive'));
    if (canWrite()) {
      tools.append(h('button', { type: 'button', onclick: () => guarded(() => bulkReplay(filters)) }, 'Replay all matching…'));
    }
    render('Events', form, tools, partial(page), list, pager('#/events', filters, page.pagination, params));

    if (!cursor) {
      let newest = page.data.length ? page.data[0].id : null;
      every(LIVE_MS, async () => {
        if (!live.checked || document.hidden) return;
        try {
          const fresh = await api('GET', '/api/v1/events' + query({ ...filters, limit: PAGE_SIZE }));
          const top = fresh.data.length ? fresh.data[0].id : null;
          if (top === newest) return;
          const known = page.data.map((e) => e.id);
          const added = fresh.data.filter((e) => !known.includes(e.id)).length;
          newest = top;
          if (!page.data.length) { route(); return; }
          page.data = fresh.data;
          fill(fresh.data);
          say(`${added} new event${added === 1 ? '' : 's'}`);
        } catch (_) { /* the next tick tries again */ }
      });
    }
  }

  function eventRow(e) {
    const sig = e.signature_valid === null || e.signature_valid === undefined ? badge('none')
      : badge(e.signature_valid ? 'valid' : 'invalid');
    return h('tr', {},
      h('td', {}, when(e.received_at)),
      h('td', { class: 'mono id' }, h('a', { href: `#/events/${encodeURIComponent(e.id)}` }, e.id)),
      h('td', {}, `${e.namespace}/${e.source}`),
      h('td', {}, e.event_type || h('span', { class: 'muted' }, '—')),
      h('td', {}, badge(e.status)),
      h('td', { class: 'num' }, e.delivery_count),
      h('td', {}, sig));
  }

  /** Count what the filter matches (paging the listing), ask, then replay page by page. */
  async function bulkReplay(filters) {
    say('Counting matching events…');
    let count = 0;
    let cursor = null;
    do {
      const page = await api('GET', '/api/v1/events' + query({ ...filters, limit: 100, cursor }));
      count += page.data.length;
      cursor = page.pagination.has_more ? page.pagination.next_cursor : null;
    } while (cursor && count < COUNT_CAP);
    const shown = cursor ? `more than ${COUNT_CAP}` : String(count);
    if (count === 0) { say('No events match: nothing to replay.'); return; }
    const ok = await confirmDialog('Replay matching events',
      `This replays ${shown} event${count === 1 ? '' : 's'} to every endpoint their subscriptions route them to.`,
      `Replay ${shown}`);
    if (!ok) return;
    const filter = { ...filters };
    if (filter.signature_valid !== undefined) filter.signature_valid = filter.signature_valid === 'true';
    let replayed = 0;
    let failed = 0;
    let next = null;
    do {
      const r = await api('POST', '/api/v1/events/bulk/replay', { filter, limit: 100, cursor: next || undefined });
      replayed += r.replayed;
      failed += r.errors.length;
      next = r.has_more ? r.next_cursor : null;
    } while (next);
    say(`Replayed ${replayed} event${replayed === 1 ? '' : 's'}${failed ? `; ${failed} could not be replayed` : ''}.`);
  }

  // ---- one event --------------------------------------------------------------------------

  async function eventPage(id) {
    const path = `/api/v1/events/${encodeURIComponent(id)}`;
    const [detail, timeline] = await Promise.all([
      api('GET', `${path}?include=payload,deliveries`),
      api('GET', `${path}/timeline`),
    ]);
    const e = detail;
    const deliveries = await Promise.all((detail.deliveries || []).map((d) =>
      api('GET', `/api/v1/deliveries/${encodeURIComponent(d.id)}`)));
    const sections = [
      h('p', {}, h('a', { href: '#/events' }, '← All events')),
      h('section', { class: 'card', 'aria-labelledby': 'h-meta' }, h('h2', { id: 'h-meta' }, 'Event'), meta([
        ['Id', h('span', { class: 'mono id' }, e.id)],
        ['Status', badge(e.status)],
        ['Source', `${e.namespace}/${e.source}`],
        ['Type', e.event_type || '—'],
        ['Received', when(e.received_at)],
        ['Origin', e.origin],
        ['Signature', e.signature_valid === null || e.signature_valid === undefined ? 'not verified'
          : [badge(e.signature_valid ? 'valid' : 'invalid'), e.signature_error ? ` ${e.signature_error}` : '']],
        ['Idempotency key', e.idempotency_key || '—'],
        ['Content type', e.content_type || '—'],
        ['Size', `${e.body_size} bytes`],
        ['Correlation id', h('span', { class: 'mono id' }, e.correlation_id)],
        ['Config', h('span', { class: 'mono id' }, e.config_hash)],
      ])),
    ];
    if (canWrite()) sections.push(await eventActions(e));
    let shownDeliveries = deliveriesSection(deliveries);
    let shownTimeline = timelineSection(timeline);
    sections.push(shownDeliveries, payloadSection(e, detail.payload), shownTimeline);
    render(`Event ${e.id}`, sections);
    // While a delivery is still in progress, show how it ends: the deliveries and the timeline
    // are replaced in place, so focus, selections and scroll stay where the reader left them.
    if (inProgress(deliveries)) {
      every(3000, async () => {
        if (document.hidden) return;
        try {
          const [fresh, events] = await Promise.all([
            api('GET', `${path}?include=deliveries`), api('GET', `${path}/timeline`)]);
          const ds = await Promise.all((fresh.deliveries || []).map((d) =>
            api('GET', `/api/v1/deliveries/${encodeURIComponent(d.id)}`)));
          const nextDeliveries = deliveriesSection(ds);
          const nextTimeline = timelineSection(events);
          shownDeliveries.replaceWith(nextDeliveries);
          shownTimeline.replaceWith(nextTimeline);
          [shownDeliveries, shownTimeline] = [nextDeliveries, nextTimeline];
          if (!inProgress(ds)) stopTimers();
        } catch (_) { /* the next tick tries again */ }
      });
    }
  }

  function inProgress(deliveries) {
    return deliveries.some((d) => !['success', 'failed', 'dead_letter'].includes(d.status));
  }

  function timelineSection(timeline) {
    return h('section', { class: 'card', 'aria-labelledby': 'h-timeline' }, h('h2', { id: 'h-timeline' }, 'Timeline'),
      timeline.data.length ? h('ol', { class: 'timeline' }, timeline.data.map((t) => h('li', {},
        when(t.at), ' ', h('strong', {}, t.kind.replace(/_/g, ' ')), ': ', t.message)))
        : h('p', { class: 'muted' }, 'Nothing yet.'));
  }

  async function eventActions(e) {
    const endpoints = await api('GET', '/api/v1/endpoints' + query({ namespace: e.namespace }));
    const chosen = h('fieldset', {}, h('legend', {}, 'Replay to chosen endpoints'),
      endpoints.data.map((ep) => h('label', {}, h('input', { type: 'checkbox', name: 'endpoint', value: ep.name }), ep.name)));
    const replay = async (list) => {
      const r = await api('POST', `/api/v1/events/${encodeURIComponent(e.id)}/replay`, list ? { endpoints: list } : undefined);
      const n = r.deliveries.length;
      say(`Replay queued: ${n} new deliver${n === 1 ? 'y' : 'ies'}.`);
      route();
    };
    const all = h('button', { type: 'button', class: 'primary', disabled: e.payload_expired },
      'Replay to all subscribed endpoints');
    all.addEventListener('click', () => guarded(() => replay(null)));
    const some = h('button', { type: 'button', disabled: e.payload_expired }, 'Replay to chosen');
    some.addEventListener('click', () => guarded(async () => {
      const list = [...chosen.querySelectorAll('input:checked')].map((i) => i.value);
      if (!list.length) { say('Choose at least one endpoint.'); return; }
      await replay(list);
    }));
    const del = h('button', { type: 'button', class: 'danger' }, 'Delete event…');
    del.addEventListener('click', () => guarded(async () => {
      const ok = await confirmDialog('Delete this event?',
        `Event ${e.id}, its payload, deliveries and attempts are removed for good.`, 'Delete', true);
      if (!ok) return;
      await api('DELETE', `/api/v1/events/${encodeURIComponent(e.id)}`);
      say(`Deleted ${e.id}.`);
      location.hash = '#/events';
    }));
    return h('section', { class: 'card', 'aria-labelledby': 'h-actions' }, h('h2', { id: 'h-actions' }, 'Actions'),
      e.payload_expired ? h('p', { class: 'muted' }, 'The payload expired: nothing left to replay.') : null,
      h('div', { class: 'actions' }, all), chosen, h('div', { class: 'actions' }, some, del));
  }

  function deliveriesSection(deliveries) {
    const body = deliveries.length ? deliveries.map(deliveryArticle) : h('p', { class: 'muted' }, 'No deliveries: no subscription matched.');
    return h('section', { class: 'card', 'aria-labelledby': 'h-deliveries' }, h('h2', { id: 'h-deliveries' }, 'Deliveries'), body);
  }

  function deliveryArticle(d) {
    const { attempts, dead_letter_of: dlq } = d;
    const head = h('h3', {}, `To ${d.namespace}/${d.endpoint} `, badge(d.status));
    const facts = meta([
      ['Delivery', h('span', { class: 'mono id' }, d.id)],
      ['Attempts', String(d.attempt_count)],
      d.next_attempt_at ? ['Next attempt', when(d.next_attempt_at)] : null,
      d.last_error ? ['Last error', h('span', { class: 'error' }, d.last_error)] : null,
      d.subscription ? ['Subscription', d.subscription] : null,
      dlq ? ['Dead letter of', `${dlq.delivery_id} (to ${dlq.endpoint}, ${dlq.attempts} attempts)`] : null,
    ]);
    const rows = attempts.map((a) => h('tr', {},
      h('td', { class: 'num' }, a.number),
      h('td', {}, when(a.started_at)),
      h('td', { class: 'num' }, `${a.duration_ms} ms`),
      h('td', {}, a.status_code ?? '—'),
      h('td', {}, a.error ? h('span', { class: 'error' }, a.error) : '—'),
      h('td', {}, a.response_body ? h('pre', { class: 'excerpt' }, excerpt(a.response_body)) : '—')));
    const out = h('article', { class: 'delivery' }, head, facts,
      table(['#', 'Started', 'Duration', 'Status code', 'Error', 'Response body'], rows, 'No attempt yet.'));
    if (canWrite() && RETRYABLE.includes(d.status)) out.append(retryButton(d));
    return out;
  }

  function retryButton(d) {
    const b = h('button', { type: 'button' }, `Retry delivery to ${d.endpoint}`);
    b.addEventListener('click', () => guarded(async () => {
      await api('POST', `/api/v1/deliveries/${encodeURIComponent(d.id)}/retry`);
      say(`Retry queued for ${d.id}.`);
      route();
    }));
    return h('div', { class: 'actions' }, b);
  }

  function excerpt(s) {
    return s.length > 600 ? `${s.slice(0, 600)}…` : s;
  }

  function payloadSection(e, payload) {
    const section = h('section', { class: 'card', 'aria-labelledby': 'h-payload' }, h('h2', { id: 'h-payload' }, 'Request'));
    if (!payload) {
      section.append(h('p', { class: 'muted' }, e.payload_expired ? 'The payload expired under retention.' : 'No payload.'));
      return section;
    }
    section.append(h('h3', {}, 'Headers'), table(['Name', 'Value'],
      payload.headers.map((p) => h('tr', {}, h('td', { class: 'mono' }, p.name), h('td', { class: 'mono id' }, p.value))), 'No headers.'));
    section.append(h('h3', { id: 'h-body' }, 'Body'));
    if (payload.encoding === 'base64') {
      section.append(h('p', { class: 'muted' }, `Not text: ${e.body_size} bytes, shown as base64.`),
        h('pre', { 'aria-labelledby': 'h-body' }, payload.body));
      return section;
    }
    let pretty = null;
    try { pretty = JSON.stringify(JSON.parse(payload.body), null, 2); } catch (_) { /* not JSON */ }
    const pre = h('pre', { 'aria-labelledby': 'h-body', tabindex: '0' }, pretty ?? payload.body);
    if (pretty === null) {
      section.append(h('p', { class: 'muted' }, 'Not JSON: shown as received.'), pre);
      return section;
    }
    const show = (raw) => {
      pre.textContent = raw ? payload.body : pretty;
      prettyBtn.setAttribute('aria-pressed', String(!raw));
      rawBtn.setAttribute('aria-pressed', String(raw));
    };
    const prettyBtn = h('button', { type: 'button', 'aria-pressed': 'true', onclick: () => show(false) }, 'Pretty');
    const rawBtn = h('button', { type: 'button', 'aria-pressed': 'false', onclick: () => show(true) }, 'Raw');
    section.append(h('div', { class: 'actions toggle', role: 'group', 'aria-label': 'Body view' }, prettyBtn, rawBtn), pre);
    return section;
  }

  // ---- deliveries -------------------------------------------------------------------------

  async function deliveriesPage(params) {
    const filters = pick(params, DELIVERY_FILTERS);
    const endpoints = await api('GET', '/api/v1/endpoints');
    const form = h('form', { class: 'card filters', role: 'search', 'aria-label': 'Filter deliveries' },
      h('div', {}, select('endpoint', 'Endpoint', [['', 'Any'], ...names(endpoints.data).map((n) => [n, n])], filters.endpoint)),
      h('div', {}, text('event_id', 'Event id', filters.event_id, 'evt_…')),
      h('div', {}, timeInput('from', 'Created from', filters.from)),
      h('div', {}, timeInput('to', 'Created to', filters.to)),
      statusBoxes('Status', DELIVERY_STATUSES, (filters.status || '').split(',')),
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary' }, 'Apply filters'),
        h('button', { type: 'button', onclick: () => { location.hash = '#/deliveries'; } }, 'Clear')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      location.hash = '#/deliveries' + query(formFilters(form, DELIVERY_FILTERS));
    });
    const page = await api('GET', '/api/v1/deliveries' + query({ ...filters, limit: PAGE_SIZE, cursor: params.get('cursor') }));
    const rows = page.data.map((d) => h('tr', {},
      h('td', {}, when(d.created_at)),
      h('td', { class: 'mono id' }, d.id),
      h('td', { class: 'mono id' }, h('a', { href: `#/events/${encodeURIComponent(d.event_id)}` }, d.event_id)),
      h('td', {}, `${d.namespace}/${d.endpoint}`),
      h('td', {}, badge(d.status)),
      h('td', { class: 'num' }, d.attempt_count),
      h('td', {}, d.last_status_code ?? '—'),
      h('td', {}, d.last_error ? h('span', { class: 'error' }, d.last_error) : '—'),
      h('td', {}, canWrite() && RETRYABLE.includes(d.status) ? retryButton(d) : '')));
    render('Deliveries', form, partial(page),
      table(['Created', 'Delivery', 'Event', 'Endpoint', 'Status', 'Attempts', 'Last code', 'Last error', ''], rows,
        'No deliveries match these filters.'),
      pager('#/deliveries', filters, page.pagination, params));
  }

  // ---- configuration ----------------------------------------------------------------------

  async function endpointsPage() {
    const list = await api('GET', '/api/v1/endpoints');
    const rows = list.data.map((ep) => {
      const lastError = h('td', {}, h('span', { class: 'muted' }, '…'));
      lastFailure(ep).then((d) => {
        lastError.replaceChildren(d ? h('span', {}, h('span', { class: 'error' }, d.last_error || `HTTP ${d.last_status_code}`), ' ', when(d.updated_at))
          : h('span', { class: 'muted' }, 'none'));
      }, () => lastError.replaceChildren(h('span', { class: 'muted' }, 'unknown')));
      const actions = h('td', {});
      if (canWrite() && ep.circuit === 'paused') {
        actions.append(h('button', { type: 'button', onclick: () => guarded(async () => {
          await api('POST', `/api/v1/endpoints/${encodeURIComponent(ep.namespace)}/${encodeURIComponent(ep.name)}/resume`);
          say(`Resumed ${ep.name}.`);
          route();
        }) }, `Resume ${ep.name}`));
      }
      return h('tr', {},
        h('td', {}, `${ep.namespace}/${ep.name}`, ep.disabled ? [' ', badge('disabled')] : ''),
        h('td', { class: 'mono id' }, ep.url),
        h('td', {}, badge(ep.circuit)),
        h('td', { class: 'num' }, ep.counters.delivered),
        h('td', { class: 'num' }, ep.counters.failed),
        h('td', { class: 'num' }, ep.counters.retried),
        lastError,
        h('td', { class: 'num' }, ep.subscription_count),
        actions);
    });
    render('Endpoints', partial(list),
      table(['Endpoint', 'URL', 'Circuit', 'Delivered', 'Failed', 'Retried', 'Last error', 'Subscriptions', ''], rows, 'No endpoints.'));
  }

  async function lastFailure(ep) {
    const page = await api('GET', '/api/v1/deliveries' + query({
      endpoint: `${ep.namespace}/${ep.name}`, status: 'retrying,failed,dead_letter', limit: 1 }));
    return page.data[0] || null;
  }

  async function sourcesPage() {
    const list = await api('GET', '/api/v1/sources');
    const rows = list.data.map((s) => {
      const url = `${location.origin}${s.ingest_path}`;
      const copy = h('button', { type: 'button', 'aria-label': `Copy the ingest URL of ${s.name}` }, 'Copy');
      copy.addEventListener('click', async () => {
        try { await navigator.clipboard.writeText(url); say('Ingest URL copied.'); } catch (_) {
          const r = document.createRange(); r.selectNodeContents(code); getSelection().removeAllRanges(); getSelection().addRange(r);
          say('Selected: press Ctrl+C to copy.');
        }
      });
      const code = h('code', { class: 'id' }, url);
      return h('tr', {},
        h('td', {}, `${s.namespace}/${s.name}`),
        h('td', {}, code, ' ', copy),
        h('td', {}, s.verification),
        h('td', {}, s.mode),
        h('td', {}, s.requires_api_key ? 'yes' : 'no'),
        h('td', { class: 'num' }, s.counters.received));
    });
    render('Sources', partial(list),
      table(['Source', 'Ingest URL', 'Verification', 'Mode', 'API key', 'Received'], rows, 'No sources.'));
  }

  async function subscriptionsPage() {
    const list = await api('GET', '/api/v1/subscriptions');
    const listOr = (xs, none) => (xs.length ? xs.join(', ') : h('span', { class: 'muted' }, none));
    const rows = list.data.map((s) => h('tr', {},
      h('td', {}, `${s.namespace}/${s.name}`),
      h('td', {}, s.endpoint, ' ', badge(s.endpoint_circuit)),
      h('td', {}, listOr(s.sources, 'every source')),
      h('td', {}, listOr(s.event_types, 'every type')),
      h('td', {}, s.filters.length ? h('ul', {}, s.filters.map((f) => h('li', { class: 'mono' }, f)))
        : h('span', { class: 'muted' }, 'none'))));
    render('Subscriptions', partial(list),
      table(['Subscription', 'Endpoint', 'Sources', 'Event types', 'Header and body filters'], rows, 'No subscriptions.'));
  }

  // ---- start ------------------------------------------------------------------------------

  document.getElementById('sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  (async () => {
    try {
      signedIn(await api('GET', '/console/session'));
      route();
    } catch (_) {
      signInPage('');
    }
  })();
})();

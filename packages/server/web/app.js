// The nst web page: plain JavaScript, no build step. Talks to the API with
// the bearer token, which the user types in and which is kept for this
// browser session only (sessionStorage): it never goes into an address.
// Server-sent events are read through fetch, which, unlike EventSource, can
// send the token; thumbnails and results are fetched the same way.
const $ = (id) => document.getElementById(id);
const tokenInput = $('token');
tokenInput.value = sessionStorage.getItem('nst-token') ?? '';
tokenInput.addEventListener('change', () => {
  sessionStorage.setItem('nst-token', tokenInput.value);
  void refresh();
});
const auth = () => ({ authorization: `Bearer ${tokenInput.value}` });

const EXAMPLES = { content: '/examples/photo.png', style: '/examples/swirls.png' };

async function api(path, init = {}) {
  const res = await fetch(`/api${path}`, { ...init, headers: { ...auth(), ...(init.headers ?? {}) } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({ error: res.statusText }));
    throw new Error(body.error ?? `HTTP ${res.status}`);
  }
  return res;
}

const showError = (e) => ($('error').textContent = e.message);

for (const field of ['content', 'style']) {
  const file = $(field);
  const example = $(`${field}-example`);
  const thumb = $(`${field}-thumb`);
  const show = () => {
    if (example.checked) thumb.src = EXAMPLES[field];
    else if (file.files[0]) thumb.src = URL.createObjectURL(file.files[0]);
    else thumb.removeAttribute('src');
  };
  file.addEventListener('change', () => {
    example.checked = false;
    show();
  });
  example.addEventListener('change', show);
}

async function chosen(field) {
  if ($(`${field}-example`).checked) return new File([await (await fetch(EXAMPLES[field])).blob()], EXAMPLES[field].split('/').pop());
  return $(field).files[0];
}

$('submit').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('error').textContent = '';
  try {
    const form = new FormData();
    for (const field of ['content', 'style']) {
      const file = await chosen(field);
      if (!file) throw new Error(`choose a ${field === 'content' ? 'photo' : 'painting'} or use the example`);
      form.append(field, file);
    }
    // Masks (greyscale: white where the painting applies, where the photo is kept): one per painting, and the photo's.
    for (const field of ['style-mask', 'content-mask']) if ($(field).files[0]) form.append(field, $(field).files[0]);
    for (const field of ['size', 'iterations', 'beta', 'priority', 'client-ref'])
      if ($(field).value !== '') form.append(field, $(field).value);
    const { id } = await (await api('/jobs', { method: 'POST', body: form })).json();
    void watch(id);
    void refresh();
  } catch (e) {
    showError(e);
  }
});

const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '');
const duration = (s) =>
  s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min` : s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;

/** One line on where a job stands: its state's own words, the iteration, the loss, where it runs and how long it has left. */
function describe(j) {
  if (j.state === 'failed') return `failed: ${j.error}`;
  if (j.state === 'cancelled') return 'cancelled';
  if (j.state === 'queued') return j.position ? `queued, number ${j.position} in line` : 'queued';
  const loss = j.losses ? `, loss ${j.losses.total.toExponential(3)}` : '';
  const where = j.state === 'stalled' ? ' (its worker stopped answering: waiting for another)' : j.worker ? ` on ${j.worker}` : '';
  const eta = j.eta !== null && j.eta !== undefined ? `, about ${duration(j.eta)} left` : '';
  // A video job: its frames, and the iterations of the frame being rendered.
  if (j.frames) {
    const each = j.frames['seconds-per-frame'] ? `, ${j.frames['seconds-per-frame'].toFixed(1)} s a frame` : '';
    const frame = j.frames.current !== null ? ` (frame ${j.frames.current + 1}: iteration ${j.iteration})` : '';
    return `${j.frames.done} of ${j.frames.total} frames done${frame}${each}${where}${eta}`;
  }
  return `iteration ${j.iteration} of ${j.iterations}${loss}${where}${eta}`;
}
const times = (j) =>
  [`submitted ${time(j.submitted)}`, j.started && `started ${time(j.started)}`, j.finished && `finished ${time(j.finished)}`]
    .filter(Boolean)
    .join(', ');

let watching = null;
let watchedId = null;
async function watch(id) {
  watching?.abort();
  const controller = new AbortController();
  watching = controller;
  watchedId = id;
  $('watch').hidden = false;
  $('job-id').textContent = id.slice(0, 8);
  $('preview').removeAttribute('src');
  delete $('preview').dataset.previews;
  $('downloads').hidden = true;
  drawChart([]);
  try {
    // The job as it stands (a finished one redraws its loss curve and result), then its events while it runs.
    const view = await (await api(`/jobs/${id}`)).json();
    await show(view);
    if (['done', 'failed', 'cancelled'].includes(view.state)) return;
    const res = await api(`/jobs/${id}/events`, { signal: controller.signal });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const m = /^event: (\w+)\ndata: (.*)$/s.exec(block);
        if (m && watchedId === id) await onEvent(m[1], JSON.parse(m[2]));
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') showError(e);
  }
}

async function onEvent(event, data) {
  if (event === 'preview') {
    const img = $('preview');
    img.src = data.image;
    img.dataset.previews = String(Number(img.dataset.previews ?? 0) + 1);
    return;
  }
  await show(data);
  if (event === 'end') void refresh();
}

/** Shows a job's view in the watch panel: state, progress, times, loss curve, buttons, and its result when done. */
async function show(j) {
  const state = $('job-state');
  state.textContent = j.state;
  state.className = `state ${j.state}`;
  $('progress').textContent = describe(j);
  $('job-times').textContent = times(j);
  drawChart(j['loss-history'] ?? []);
  $('cancel').hidden = !['queued', 'running', 'stalled'].includes(j.state);
  $('retry').hidden = !['failed', 'cancelled'].includes(j.state);
  if (j.state === 'done' && $('downloads').hidden && j.frames) {
    // A video job's result is its .mp4; the preview keeps its last frame.
    const url = URL.createObjectURL(await (await api(`/jobs/${j.id}/result`)).blob());
    Object.assign($('download'), { href: url, download: `nst-${j.id.slice(0, 8)}.mp4`, textContent: 'MP4' });
    for (const format of ['jpeg', 'tiff']) $(`download-${format}`).hidden = true;
    $('downloads').hidden = false;
  } else if (j.state === 'done' && $('downloads').hidden) {
    const url = URL.createObjectURL(await (await api(`/jobs/${j.id}/result`)).blob());
    $('preview').src = url;
    const stem = `nst-${j.id.slice(0, 8)}`;
    $('download').textContent = 'PNG';
    Object.assign($('download'), { href: url, download: `${stem}.png` });
    for (const format of ['jpeg', 'tiff']) {
      const link = $(`download-${format}`);
      link.hidden = false;
      link.download = `${stem}.${format === 'jpeg' ? 'jpg' : 'tif'}`;
      link.onclick = (event) => download(event, j.id, format, link.download);
    }
    $('downloads').hidden = false;
  }
}

/** Fetches a result in another format with the token, then saves it. */
async function download(event, id, format, name) {
  event.preventDefault();
  try {
    const url = URL.createObjectURL(await (await api(`/jobs/${id}/result?format=${format}`)).blob());
    Object.assign(document.createElement('a'), { href: url, download: name }).click();
  } catch (e) {
    showError(e);
  }
}

async function control(id, action) {
  $('error').textContent = '';
  try {
    const view = await (
      await api(action === 'cancel' ? `/jobs/${id}` : `/jobs/${id}/retry`, { method: action === 'cancel' ? 'DELETE' : 'POST' })
    ).json();
    if (watchedId === id) action === 'retry' ? void watch(id) : await show(view);
    void refresh();
  } catch (e) {
    showError(e);
  }
}
$('cancel').addEventListener('click', () => control(watchedId, 'cancel'));
$('retry').addEventListener('click', () => control(watchedId, 'retry'));

/** The total loss against the iteration, on a log scale. */
function drawChart(points) {
  const canvas = $('chart');
  canvas.dataset.points = String(points.length);
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (points.length < 2) return;
  const xs = points.map((p) => p.iteration);
  const ys = points.map((p) => Math.log10(Math.max(p.total, 1e-30)));
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const px = (x) => 8 + ((x - x0) / Math.max(x1 - x0, 1e-9)) * (canvas.width - 16);
  const py = (y) => canvas.height - 8 - ((y - y0) / Math.max(y1 - y0, 1e-9)) * (canvas.height - 16);
  g.strokeStyle = '#236';
  g.lineWidth = 2;
  g.beginPath();
  points.forEach((_, k) => (k ? g.lineTo : g.moveTo).call(g, px(xs[k]), py(ys[k])));
  g.stroke();
}

/** Thumbnails, fetched with the token once each and kept as blob URLs (a result's once it exists). */
const thumbs = new Map();
function thumbnail(j, of) {
  const key = `${j.id}/${of}`;
  if (of === 'result' && j.state !== 'done') {
    const none = document.createElement('span');
    none.className = 'no-result';
    return none;
  }
  const img = document.createElement('img');
  img.alt = of === 'result' ? 'result' : `${of}: ${of === 'content' ? j.names?.content : j.names?.styles?.[0]}`;
  img.dataset.of = of;
  if (!thumbs.has(key))
    thumbs.set(
      key,
      api(`/jobs/${j.id}/thumbnail?of=${of}`)
        .then(async (r) => URL.createObjectURL(await r.blob()))
        .catch(() => (thumbs.delete(key), null)),
    );
  void thumbs.get(key).then((url) => url && (img.src = url));
  return img;
}

function jobCard(j) {
  const li = document.createElement('li');
  li.className = 'job';
  li.dataset.id = j.id;
  li.dataset.state = j.state;
  const pics = document.createElement('div');
  pics.className = 'thumbs';
  pics.append(thumbnail(j, 'content'), thumbnail(j, 'style'), thumbnail(j, 'result'));
  const about = document.createElement('div');
  about.className = 'about';
  const title = document.createElement('p');
  const badge = document.createElement('span');
  badge.className = `state ${j.state}`;
  badge.textContent = j.state;
  const names = j.names ? `${j.names.content} in the style of ${j.names.styles.join(' + ')}` : j.id.slice(0, 8);
  title.append(badge, ` ${names}`, j['client-ref'] ? ` (${j['client-ref']})` : '');
  const s = j.settings ?? {};
  const settings = document.createElement('p');
  settings.className = 'muted';
  settings.textContent = [
    s.size && `size ${s.size}`,
    `${j.iterations} iterations`,
    s.beta && `style weight ${s.beta}`,
    j.priority && `priority ${j.priority}`,
    j.owner && `by ${j.owner}`,
  ]
    .filter(Boolean)
    .join(', ');
  const status = document.createElement('p');
  status.className = j.state === 'failed' ? 'error' : 'muted';
  status.textContent = `${describe(j)}; ${times(j)}`;
  about.append(title, settings, status);
  const buttons = document.createElement('div');
  buttons.className = 'buttons';
  const button = (label, action) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.className = action;
    b.addEventListener('click', (event) => {
      event.stopPropagation();
      void control(j.id, action);
    });
    buttons.append(b);
  };
  if (['queued', 'running', 'stalled'].includes(j.state)) button('Cancel', 'cancel');
  if (['failed', 'cancelled'].includes(j.state)) button('Retry', 'retry');
  li.append(pics, about, buttons);
  li.addEventListener('click', () => watch(j.id));
  return li;
}

function workerItem(w) {
  const li = document.createElement('li');
  const busy = w.rendering.length
    ? `rendering ${w.rendering.map((id) => id.slice(0, 8)).join(', ')}`
    : w.jobs.length
      ? 'gathering a batch'
      : 'idle';
  const rate = w.iterationsPerSecond ? `, ${w.iterationsPerSecond.toFixed(1)} iterations/s` : '';
  li.textContent = `${w.host} (${w.backend}${w.gpu ? `, ${w.gpu}` : ''}): ${busy}${rate}; ${w.imagesDone} images done; heartbeat ${Math.round((Date.now() - w.heartbeat) / 1000)} s ago`;
  return li;
}

const filter = () => document.querySelector('input[name=filter]:checked').value;
for (const radio of document.querySelectorAll('input[name=filter]')) radio.addEventListener('change', () => void refresh());

async function refresh() {
  if (!tokenInput.value) return;
  try {
    const state = filter();
    const [{ jobs }, { workers }] = await Promise.all([
      api(`/jobs${state ? `?state=${state}` : ''}`).then((r) => r.json()),
      api('/workers').then((r) => r.json()),
    ]);
    $('jobs').replaceChildren(...jobs.map(jobCard));
    const list = $('workers');
    if (workers.length) list.replaceChildren(...workers.map(workerItem));
    else list.innerHTML = '<li class="muted">no worker is running</li>';
  } catch (e) {
    showError(e);
  }
}
void refresh();
setInterval(refresh, 3000);

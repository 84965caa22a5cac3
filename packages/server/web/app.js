// The nst web page: plain JavaScript, no build step. Talks to the API with
// the bearer token (from #token=... in the address, or typed in), and reads
// server-sent events through fetch, which, unlike EventSource, can send it.
const $ = (id) => document.getElementById(id);
const tokenInput = $('token');
tokenInput.value = new URLSearchParams(location.hash.slice(1)).get('token') ?? localStorage.getItem('nst-token') ?? '';
tokenInput.addEventListener('change', () => localStorage.setItem('nst-token', tokenInput.value));
if (tokenInput.value) localStorage.setItem('nst-token', tokenInput.value);
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
  if ($(`${field}-example`).checked) return new File([await (await fetch(EXAMPLES[field])).blob()], `${field}.png`);
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
    form.append('size', $('size').value);
    form.append('iterations', $('iterations').value);
    form.append('beta', $('beta').value);
    const { id } = await (await api('/jobs', { method: 'POST', body: form })).json();
    void watch(id);
    void refreshJobs();
  } catch (e) {
    $('error').textContent = e.message;
  }
});

let watching = null;
async function watch(id) {
  watching?.abort();
  const controller = new AbortController();
  watching = controller;
  $('watch').hidden = false;
  $('job-id').textContent = id.slice(0, 8);
  $('preview').removeAttribute('src');
  delete $('preview').dataset.previews;
  $('download').hidden = true;
  const losses = [];
  drawChart(losses);
  try {
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
        if (m) await onEvent(id, m[1], JSON.parse(m[2]), losses);
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') $('error').textContent = e.message;
  }
}

async function onEvent(id, event, data, losses) {
  if (event === 'preview') {
    const img = $('preview');
    img.src = data.image;
    img.dataset.previews = String(Number(img.dataset.previews ?? 0) + 1);
    return;
  }
  const state = $('job-state');
  state.textContent = data.state;
  state.className = `state ${data.state}`;
  $('progress').textContent =
    data.state === 'failed'
      ? `failed: ${data.error}`
      : `iteration ${data.iteration} of ${data.iterations}${data.losses ? `, loss ${data.losses.total.toExponential(3)}` : ''}`;
  // Losses are reported every few iterations: one point per new report.
  if (data.losses && losses.at(-1)?.total !== data.losses.total) {
    losses.push({ iteration: data.iteration, total: data.losses.total });
    drawChart(losses);
  }
  if (event === 'end' && data.state === 'done') {
    const url = URL.createObjectURL(await (await api(`/jobs/${id}/result`)).blob());
    $('preview').src = url;
    const link = $('download');
    link.href = url;
    link.download = `nst-${id.slice(0, 8)}.png`;
    link.hidden = false;
    void refreshJobs();
  }
}

/** The total loss against the iteration, on a log scale. */
function drawChart(points) {
  const canvas = $('chart');
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

async function refreshJobs() {
  if (!tokenInput.value) return;
  try {
    const { jobs } = await (await api('/jobs')).json();
    const body = $('jobs').tBodies[0];
    body.replaceChildren(
      ...jobs.map((j) => {
        const row = document.createElement('tr');
        row.dataset.id = j.id;
        const cells = [j.id.slice(0, 8), j.state, `${j.iteration}/${j.iterations}`, j.error ?? ''];
        for (const text of cells) row.insertCell().textContent = text;
        row.cells[1].className = `state ${j.state}`;
        row.addEventListener('click', () => watch(j.id));
        return row;
      }),
    );
  } catch (e) {
    $('error').textContent = e.message;
  }
}
void refreshJobs();
setInterval(refreshJobs, 3000);

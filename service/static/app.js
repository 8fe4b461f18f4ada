// Minimal client: sign in, ask for a presigned POST, post the file straight to S3.
const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw Object.assign(new Error(body.error.detail), { code: body.error.code });
  return body;
}

function postToS3(presigned, file, onProgress) {
  const form = new FormData();
  for (const [name, value] of Object.entries(presigned.fields)) form.append(name, value);
  form.append("file", file);  // S3 ignores every field after the file
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", presigned.url);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => (xhr.status === 201 ? resolve() : reject(new Error(`storage refused the upload (${xhr.status})`)));
    xhr.onerror = () => reject(new Error("network error while uploading"));
    xhr.send(form);
  });
}

async function upload(file) {
  const status = $("status"), progress = $("progress");
  progress.hidden = false; progress.value = 0;
  try {
    status.textContent = `Uploading ${file.name}…`;
    const presigned = await api("api/upload/presigned-url", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filename: file.name, contentType: file.type, size: file.size }),
    });
    await postToS3(presigned, file, (f) => (progress.value = Math.round(f * 100)));
    progress.value = 100;
    status.textContent = `Uploaded ${file.name} as ${presigned.key}`;
  } catch (error) {
    status.textContent = `Not uploaded: ${error.message}`;
  }
}

async function main() {
  try {
    const me = await api("api/me");
    $("who").textContent = me.name || me.email || me.subject;
    $("signed-in").hidden = false;
    $("file").addEventListener("change", (e) => e.target.files[0] && upload(e.target.files[0]));
  } catch {
    const { providers } = await api("api/providers");
    for (const p of providers) {
      const a = Object.assign(document.createElement("a"), { href: p.loginUrl, className: "button", textContent: `Sign in with ${p.title}` });
      $("providers").append(a);
    }
    $("signed-out").hidden = false;
  }
}
main();

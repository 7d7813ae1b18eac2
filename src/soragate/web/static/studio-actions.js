// What a card can do to its task, each through the public endpoint a client would use.
// A retry is a new task with the same parameters, sent to the endpoint (dialect) that
// created the original.

import { api } from "/static/api.js";

// How to send a task again, or null with the reason it cannot be retried from here.
export function retryPlan(task) {
  const p = { prompt: task.prompt, model: task.model };
  const seconds = task.seconds ? String(Math.round(task.seconds)) : undefined;
  const image = (task.reference_images || [])[0];
  if (task.dialect === "openai") {
    if (task.kind === "text_to_video" || task.kind === "image_to_video") {
      const body = { ...p, seconds, size: task.size };
      if (task.kind === "image_to_video") {
        if (!image) return { reason: "The input image of this task is not known." };
        body.input_reference = { file_id: image };
      }
      return { path: "/v1/videos", body };
    }
    if (task.kind === "remix" && task.remixed_from) {
      return { path: `/v1/videos/${task.remixed_from}/remix`, body: { prompt: task.prompt } };
    }
    if (task.kind === "extend" && task.remixed_from && task.extension_seconds) {
      const body = { prompt: task.prompt, seconds: String(task.extension_seconds), video: { id: task.remixed_from } };
      return { path: "/v1/videos/extensions", body };
    }
    if (task.kind === "text_to_image") {
      return { path: "/v1/images/generations", body: { ...p, size: task.size, response_format: "url" } };
    }
  }
  if (task.dialect === "sora2api") {
    const styled = task.style ? { style: task.style } : {};
    const paths = { text_to_video: "/v1/videos/generate", storyboard: "/v1/videos/storyboard", text_to_image: "/v1/images/generate" };
    if (paths[task.kind]) return { path: paths[task.kind], body: { ...p, ...styled, async_mode: true } };
    if (task.kind === "remix" && task.remixed_from) {
      return { path: "/v1/videos/remix", body: { ...p, ...styled, remix_target_id: task.remixed_from, async_mode: true } };
    }
    if (task.kind === "image_to_video") return { reason: "Sora2API image tasks carry the image inline; send it again from Image → video." };
  }
  return { reason: `This ${task.kind.replaceAll("_", " ")} task came in through the ${task.dialect || "another"} API; retry it from the client that made it.` };
}

// Returns the new task's id.
export async function retry(task) {
  const plan = retryPlan(task);
  if (!plan.path) throw new Error(plan.reason);
  let answer;
  try {
    answer = await api(plan.path, { method: "POST", json: plan.body });
  } catch (error) {
    if (error.status === 404 && task.remixed_from && error.message.includes(task.remixed_from)) {
      // The video it was made from is gone: say so, rather than name an id the page no longer shows.
      error.message = `The video this ${task.kind === "extend" ? "extension" : "remix"} was made from was deleted: it cannot be made again.`;
    }
    throw error;
  }
  if (answer.data && !answer.id) return null; // images answer with the files; the stream brings the task
  return answer.id || answer.task_id;
}

export async function remix(task, prompt) {
  const answer = await api(`/v1/videos/${task.task_id}/remix`, { method: "POST", json: { prompt } });
  return answer.id || answer.task_id;
}

// What an extension may add, in seconds (OpenAI's values).
export const EXTENSION_SECONDS = [4, 8, 12, 16, 20];

export async function extend(task, prompt, seconds) {
  const body = { prompt, seconds: String(seconds), video: { id: task.task_id } };
  const answer = await api("/v1/videos/extensions", { method: "POST", json: body });
  return answer.id || answer.task_id;
}

export async function cancel(task) {
  await api(`/v1/tasks/${task.task_id}/cancel`, { method: "POST" });
}

// The task's prompt and settings back in the Create form, to change and send again.
export function edit(task) {
  document.dispatchEvent(new CustomEvent("studio:edit", { detail: task }));
}

export async function remove(task) {
  await api(`/v1/tasks/${task.task_id}`, { method: "DELETE" }); // videos and images alike
}

// Signed file links are absolute (the server's public URL); the page loads them from its own
// origin so the player and downloads work behind any host name the browser used.
export function local(url) {
  if (!url) return url;
  const parsed = new URL(url, location.href);
  return parsed.origin === location.origin ? parsed.href : parsed.pathname + parsed.search;
}

// The failure in words a person can act on: what happened, then what to do about it.
const REASONS = {
  prompt_review_failed: ["Content review blocked the prompt.", "Change the wording and retry."],
  image_review_failed: ["Content review blocked the input image.", "Try another image."],
  result_review_failed: ["The finished video did not pass content review.", "Retry, or change the prompt."],
  invalid_input: ["The provider refused the request as invalid.", "Check the parameters below."],
  upstream_error: ["The upstream provider reported an error.", "Retry; if it keeps failing, tell the admin."],
  upstream_submission_uncertain: ["It is not known whether the upstream accepted the task.", "Retry to be sure."],
  upstream_unknown_status: ["The upstream answered with a status its model profile does not know.", "Tell the admin: the profile's status_map needs the word."],
  timeout: ["The upstream took too long and the task was given up.", "Retry later."],
  cancelled: ["The task was cancelled.", "Retry to run it again."],
  result_unavailable: ["The upstream finished but its result could not be fetched.", "Retry."],
};

// [headline, advice]: the server's own message when it has one, else the code's meaning.
export function failureReason(task) {
  const [meaning, advice] = REASONS[task.error_code] || REASONS[task.state] || ["The generation failed.", "Retry."];
  return [task.error_message || meaning, advice];
}

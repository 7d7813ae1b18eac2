// The input image of image → video: choose a file, drop one on the zone, or paste one
// from the clipboard; a preview shows what will be sent.

const TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];

export class ImageInput {
  constructor({ zone, input, preview, hint, clear, onError, isActive }) {
    Object.assign(this, { zone, input, preview, hint, clear, onError, isActive });
    this.file = null;
    this.url = null;
    input.addEventListener("change", () => {
      if (input.files && input.files[0]) this.set(input.files[0]);
    });
    clear.addEventListener("click", () => {
      this.reset();
      input.focus();
    });
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (event) => {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    }
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      const file = [...(event.dataTransfer?.files || [])][0];
      if (file) this.set(file);
    });
    document.addEventListener("paste", (event) => {
      if (!this.isActive()) return;
      const item = [...(event.clipboardData?.items || [])].find((i) => i.kind === "file" && i.type.startsWith("image/"));
      if (!item) return;
      event.preventDefault();
      this.set(item.getAsFile());
    });
  }

  set(file) {
    if (!TYPES.includes(file.type)) {
      this.onError(`“${file.name || "That file"}” is not a PNG, JPEG, WebP or GIF image.`);
      return;
    }
    this.onError("");
    if (this.url) URL.revokeObjectURL(this.url);
    this.file = file;
    this.url = URL.createObjectURL(file);
    this.preview.src = this.url;
    this.preview.hidden = false;
    this.clear.hidden = false;
    this.hint.textContent = `${file.name || "Pasted image"} · ${Math.max(1, Math.round(file.size / 1024))} KB. Drop or paste another to replace it.`;
  }

  reset() {
    if (this.url) URL.revokeObjectURL(this.url);
    this.file = null;
    this.url = null;
    this.input.value = "";
    this.preview.removeAttribute("src");
    this.preview.hidden = true;
    this.clear.hidden = true;
    this.hint.textContent = "Drop an image here, paste one (Ctrl+V), or choose a file.";
  }

  // Sora2API's transform endpoint takes the image inline, as a data URL.
  dataUrl() {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(this.file);
    });
  }
}

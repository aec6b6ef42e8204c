// What a file is, from its bytes (file-type's signatures), against what the caller says it is:
// the declared type and the one its name implies. The danger is a program dressed as a
// document: an agent can be talked into attaching `invoice.pdf` that is a Windows executable,
// and the recipient's mail client trusts the name. So a file whose bytes are a program (or an
// installer, a disk image, a shortcut) is refused unless it is called one. Any other
// disagreement is a label to correct, not a threat: the stored type is what the bytes are
// (an .xlsx declared as application/vnd.ms-excel is stored as the .xlsx type it is). Text has
// no signature: a text file that happens to start with "MZ" or "BM" is still text.
import { fileTypeFromBuffer } from "file-type";
import { detectMimeType } from "nodemailer/lib/mime-funcs";
import { ApiError } from "../http.ts";

const OCTET_STREAM = "application/octet-stream";

/** Spellings of one type that clients use interchangeably. */
const ALIASES: Record<string, string> = {
  "image/jpg": "image/jpeg",
  "image/pjpeg": "image/jpeg",
  "application/x-zip-compressed": "application/zip",
  "application/x-zip": "application/zip",
  "application/x-pdf": "application/pdf",
  "audio/mp3": "audio/mpeg",
  "audio/x-wav": "audio/wav",
  "audio/wave": "audio/wav",
  "application/x-gzip": "application/gzip",
  "application/x-tgz": "application/gzip",
  "application/gnutar": "application/gzip",
  "application/x-gtar": "application/gzip",
  "application/x-compressed": "application/gzip",
  "text/xml": "application/xml",
  "text/rtf": "application/rtf",
};

/** Formats stored in a zip container: file-type may see only the zip. */
const IN_ZIP =
  /^application\/(vnd\.openxmlformats-officedocument\.|vnd\.oasis\.opendocument\.|epub\+zip|vnd\.ms-(excel|word|powerpoint)\.[a-z.]*macroenabled)/;
/** Formats stored in a Compound File (old Office, Outlook messages). */
const IN_CFB = /^application\/(msword|vnd\.ms-|x-msi|vnd\.visio)/;
/** Families where one member declared as another is a harmless misnaming, not a disguise. */
const SAME_FAMILY = /^(image|audio|video|font)\//;
/** What runs, installs or opens something else when it is opened: never under another name. */
const RUNS =
  /^application\/(x-msdownload|x-dosexec|vnd\.microsoft\.portable-executable|x-elf|x-executable|x-sharedlib|x-mach-binary|x-msi|x\.ms\.shortcut|x-ms-shortcut|java-archive|vnd\.android\.package-archive|x-apple-diskimage|vnd\.ms-cab-compressed|wasm|x-android-dex|x-xpinstall|x-google-chrome-extension|x-chrome-extension)$/;

function canonical(type: string): string {
  return ALIASES[type] ?? type;
}

/** Whether a file whose bytes are `detected` may be called `claimed`. */
export function compatibleTypes(claimed: string, detected: string): boolean {
  const a = canonical(claimed);
  const b = canonical(detected);
  if (a === b) return true;
  const family = a.split("/")[0];
  if (SAME_FAMILY.test(a) && b.startsWith(`${family}/`)) return true;
  if (b === "application/zip" && IN_ZIP.test(a)) return true;
  if (a === "application/zip" && IN_ZIP.test(b)) return true;
  if (b === "application/x-cfb" && IN_CFB.test(a)) return true;
  if (b === "application/xml" && (a.endsWith("+xml") || a === "application/xml")) return true;
  return false;
}

/** Whether bytes of this type run (or install, or open something else) when opened. */
export function runsWhenOpened(type: string): boolean {
  return RUNS.test(type);
}

/** The type a file name implies (nodemailer's table, as it labels an attachment), or null. */
export function typeByName(filename: string): string | null {
  const type = detectMimeType(filename);
  return !type || type === OCTET_STREAM ? null : type;
}

const TEXT_SAMPLE_BYTES = 4096;

/** Text: the first bytes decode as UTF-8 and hold no NUL (every program's header has some). */
function looksLikeText(bytes: Uint8Array): boolean {
  const sample = bytes.subarray(0, TEXT_SAMPLE_BYTES);
  if (sample.includes(0)) return false;
  try {
    // A character cut at the sample's end is not a reason to call it binary.
    new TextDecoder("utf-8", { fatal: true }).decode(sample.subarray(0, Math.max(0, sample.length - 3)));
    return true;
  } catch {
    return false;
  }
}

function isTextType(type: string): boolean {
  return type.startsWith("text/") || /^application\/(json|xml|csv|x-ndjson|javascript|x-yaml|yaml|rtf)$/.test(type) ||
    type.endsWith("+xml") || type.endsWith("+json");
}

/** What the bytes are (file-type), unless a text file's first bytes merely look like a signature. */
async function detect(bytes: Uint8Array, claims: string[]): Promise<string | undefined> {
  const detected = (await fileTypeFromBuffer(bytes).catch(() => undefined))?.mime;
  if (!detected) return undefined;
  if (claims.some(isTextType) && looksLikeText(bytes)) return undefined;
  return detected;
}

/**
 * The content type to store for a file: what its bytes are when they are a known format, else
 * the declared type (lower case; `application/octet-stream` counts as none), else the one its
 * name implies, else `application/octet-stream`.
 *
 * @throws ApiError 422 `attachment_type_mismatch` when the bytes are a program (an executable,
 *   an installer, a shortcut, ...) that neither the declared type nor the name says it is
 *   (`details`: `detected`, and `declared` or `filename` with `expected`).
 * @example
 * ```ts
 * await settleContentType(pdfBytes, undefined, "report.pdf"); // "application/pdf"
 * await settleContentType(exeBytes, undefined, "report.pdf"); // throws attachment_type_mismatch
 * ```
 */
export async function settleContentType(
  bytes: Uint8Array,
  declared: string | undefined,
  filename: string,
): Promise<string> {
  const claimed = declared && declared !== OCTET_STREAM ? declared : undefined;
  const byName = typeByName(filename);
  const detected = await detect(bytes, [claimed, byName].filter((t): t is string => t !== undefined && t !== null));
  if (!detected) return claimed ?? byName ?? OCTET_STREAM;
  checkNotDisguised(detected, claimed, filename);
  // A declared type the bytes agree with stays (it may be the more precise one); otherwise the bytes decide.
  return claimed && compatibleTypes(claimed, detected) ? claimed : detected;
}

/**
 * Refuse a program called something else: by its declared type, or by its name.
 *
 * @throws ApiError 422 `attachment_type_mismatch`.
 */
export function checkNotDisguised(detected: string, declared: string | undefined, filename: string): void {
  if (!runsWhenOpened(detected)) return;
  if (declared && declared !== OCTET_STREAM && !compatibleTypes(declared, detected)) {
    throw new ApiError(
      422,
      "attachment_type_mismatch",
      `The file is a program (${detected}), not the declared ${declared}; programs are attached only as what they are`,
      { declared, detected },
    );
  }
  const byName = typeByName(filename);
  if (byName && !compatibleTypes(byName, detected)) {
    throw new ApiError(
      422,
      "attachment_type_mismatch",
      `The file is a program (${detected}), but its name ${JSON.stringify(filename)} says ${byName}; ` +
        "programs are attached only under a name that says what they are",
      { filename, expected: byName, detected },
    );
  }
}

/**
 * An inline file's bytes checked as an upload's are (a program under another name is refused).
 *
 * @throws ApiError 422 `attachment_type_mismatch`.
 */
export async function checkInlineFile(
  bytes: Uint8Array,
  declared: string | undefined,
  filename: string,
): Promise<void> {
  const claims = [declared, typeByName(filename)].filter((t): t is string => typeof t === "string");
  const detected = await detect(bytes, claims);
  if (detected) checkNotDisguised(detected, declared, filename);
}

// What a file is, from its first bytes (file-type's signatures), checked against what the caller
// says it is: a declared type, or the one its file name implies. An agent can be talked into
// attaching `invoice.pdf` that is a Windows executable; the recipient's mail client trusts the
// name. Families that legitimately disagree are allowed: any image declared as another image
// (photos are often misnamed), Office and OpenDocument files that are zip or CFB containers,
// XML dialects. Text formats have no signature and pass as declared.
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
  "text/xml": "application/xml",
};

/** Formats stored in a zip container: file-type may see only the zip. */
const IN_ZIP =
  /^application\/(vnd\.openxmlformats-officedocument\.|vnd\.oasis\.opendocument\.|epub\+zip|java-archive|vnd\.android\.package-archive|x-xpinstall|vnd\.ms-(excel|word|powerpoint)\.[a-z.]*macroenabled)/;
/** Formats stored in a Compound File (old Office, Outlook messages). */
const IN_CFB = /^application\/(msword|vnd\.ms-|x-msi|vnd\.visio)/;
/** Families where one member declared as another is a harmless misnaming, not a disguise. */
const SAME_FAMILY = /^(image|audio|video|font)\//;

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

/** The type a file name implies (nodemailer's table, as it labels an attachment), or null. */
export function typeByName(filename: string): string | null {
  const type = detectMimeType(filename);
  return !type || type === OCTET_STREAM ? null : type;
}

/**
 * The content type to store for a file: the declared one (lower case, `application/octet-stream`
 * counting as none), else the sniffed one, else the one its name implies, else
 * `application/octet-stream`.
 *
 * @throws ApiError 422 `attachment_type_mismatch` when the bytes are a known format that neither
 *   the declared type nor the file name's may stand for (`details`: `detected`, and `declared`
 *   or `filename` with `expected`).
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
  const detected = (await fileTypeFromBuffer(bytes).catch(() => undefined))?.mime;
  const byName = typeByName(filename);
  if (detected && claimed && !compatibleTypes(claimed, detected)) {
    throw new ApiError(
      422,
      "attachment_type_mismatch",
      `The file is ${detected}, not the declared ${claimed}; declare its real type (or none)`,
      { declared: claimed, detected },
    );
  }
  if (detected && byName && !compatibleTypes(byName, detected)) {
    throw new ApiError(
      422,
      "attachment_type_mismatch",
      `The file is ${detected}, but its name ${JSON.stringify(filename)} says ${byName}; ` +
        "give it a name that says what it is",
      { filename, expected: byName, detected },
    );
  }
  return claimed ?? detected ?? byName ?? OCTET_STREAM;
}

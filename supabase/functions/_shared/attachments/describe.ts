// What a send attaches, listed for a person to read (an approval's preview, a sent message's
// detail): names, types and sizes, never bytes.
import { type AttachmentInput, decodedLength } from "../mail/compose.ts";
import type { DescribedAttachment } from "../mail/kept_content.ts";

export type { DescribedAttachment };

/** What a listing needs to know of a stored file. */
export interface StoredFileFacts {
  filename: string;
  content_type: string | null;
  size_bytes: number;
}

/** The decoded size of checked base64 (line breaks ignored). */
export function base64Size(content: string): number {
  return decodedLength(content.replace(/\s/g, ""));
}

/**
 * A send's attachments as a listing shows them: inline files by their decoded size, stored ones
 * as `stored` knows them (keyed by lower-case id; a file no longer stored is `(deleted)`). Files
 * given by URL are stored before a send is accepted, so a request never names one by then.
 */
export function describeAttachments(
  list: AttachmentInput[] | undefined,
  stored: ReadonlyMap<string, StoredFileFacts>,
): DescribedAttachment[] {
  return (list ?? []).flatMap((a) => {
    if ("url" in a) return [];
    if ("id" in a) {
      const file = stored.get(a.id.toLowerCase());
      return [{
        id: a.id.toLowerCase(),
        filename: a.filename ?? file?.filename ?? "(deleted)",
        content_type: file?.content_type ?? null,
        size_bytes: file?.size_bytes ?? 0,
      }];
    }
    return [{ filename: a.filename, content_type: a.content_type ?? null, size_bytes: base64Size(a.content) }];
  });
}

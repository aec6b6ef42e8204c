// Stored attachments: a file uploaded once (or fetched once from an HTTPS URL) and referenced by
// id from any number of messages. The table and its rules are in
// supabase/migrations/20261207060000_stored_attachments.sql; this folder is how the functions
// store, list and delete files (store.ts, upload.ts), check what a file really is
// (content_type.ts), fetch one through the egress policy (url_fetch.ts), and what a send does
// with the files it names (for_sends.ts).
export { type AttachmentLimits, DEFAULT_ATTACHMENT_LIMITS, loadAttachmentLimits } from "./limits.ts";
export { compatibleTypes, runsWhenOpened, settleContentType, typeByName } from "./content_type.ts";
export { fetchAttachmentUrl, type FetchedFile, MAX_REDIRECTS } from "./url_fetch.ts";
export {
  type AttachmentRecord,
  deleteAttachment,
  getAttachment,
  type HeldAttachment,
  listAttachments,
  loadAttachmentContents,
  storedAttachmentsById,
  type StoredFile,
} from "./store.ts";
export {
  attachmentDigests,
  attachmentIds,
  checkAttachmentTypes,
  holdSendAttachments,
  MAX_URLS_PER_REQUEST,
  resolveAttachmentReferences,
  SEND_HOLD_DAYS,
  storedSizes,
} from "./for_sends.ts";
export { storeUpload } from "./upload.ts";
export { base64Size, describeAttachments, type DescribedAttachment, type StoredFileFacts } from "./describe.ts";

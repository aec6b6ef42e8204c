// How a built message leaves when not over SMTP: a provider's HTTPS send API (Microsoft Graph,
// the Gmail API), answering in the same DeliveryReport as an SMTP delivery.
export {
  DEFAULT_ENDPOINTS,
  GMAIL_RAW_MAX_BYTES,
  GRAPH_MAX_MESSAGE_BYTES,
  type HttpsEndpoints,
  type HttpsMessage,
  type HttpsSendOptions,
  type HttpsTransport,
  sendOverHttps,
  type TokenSource,
  withBccHeader,
} from "./https_send.ts";

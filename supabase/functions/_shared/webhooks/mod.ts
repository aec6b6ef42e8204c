// Webhooks: message events sent to the user's own HTTPS endpoints, signed per Standard Webhooks.
export {
  createWebhook,
  createWebhookRequest,
  deleteWebhook,
  getWebhook,
  listDeliveries,
  listWebhooks,
  queueTest,
  rotateWebhookSecret,
  updateWebhook,
  updateWebhookRequest,
  type Webhook,
  WEBHOOK_EVENT_TYPES,
  type WebhookDelivery,
} from "./store.ts";
export { deliverWebhooks, type DeliveryRound } from "./delivery.ts";
export { newWebhookSecret, signatureHeaders } from "./signing.ts";

// The reference's promises about errors and examples hold: every documented error code is one
// the functions really throw, with that status; every example is accepted by (requests) or
// matches (responses) the zod schema the functions use; every operation sits under its
// function's tag and lists its 4xx codes.
import { createWebhookRequest, updateWebhookRequest } from "../supabase/functions/_shared/webhooks/mod.ts";
import assert from "node:assert/strict";
import { openApiDocument } from "../supabase/functions/_shared/openapi.ts";
import { ERROR_CODES, ROUTE_ERRORS } from "../supabase/functions/_shared/openapi_errors.ts";
import { REQUEST_EXAMPLES, RESPONSE_EXAMPLES } from "../supabase/functions/_shared/openapi_examples.ts";
import { RESPONSES } from "../supabase/functions/_shared/responses.ts";
import {
  createConfigRequest,
  createTemplateRequest,
  imapSettingsRequest,
  previewTemplateRequest,
  sendBulkRequest,
  sendEmailRequest,
  updateConfigRequest,
  updateTemplateRequest,
  uploadAttachmentRequest,
} from "../supabase/functions/_shared/schemas.ts";
import { functionHandlers } from "../local/functions.ts";

type Json = Record<string, unknown>;
const doc = openApiDocument("https://abc.supabase.co") as {
  paths: Record<string, Record<string, Json>>;
  components: Json;
  tags: Array<{ name: string }>;
};

/** The functions' sources and the migrations, without the catalogue itself. */
async function functionSources(): Promise<string> {
  const texts: string[] = [];
  const visit = async (dir: URL) => {
    for await (const entry of Deno.readDir(dir)) {
      const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
      if (entry.isDirectory) await visit(url);
      else if (/\.(ts|sql)$/.test(entry.name) && !/^openapi_(errors|examples)\.ts$/.test(entry.name)) {
        texts.push(await Deno.readTextFile(url));
      }
    }
  };
  await visit(new URL("../supabase/functions/", import.meta.url));
  // Some codes are raised by the database (rate limits), as PostgREST-style errors.
  await visit(new URL("../supabase/migrations/", import.meta.url));
  return texts.join("\n");
}

Deno.test("documented error codes", async (t) => {
  const source = await functionSources();

  await t.step("every code is one the functions use, with the status they throw it with", () => {
    const unknown = Object.keys(ERROR_CODES).filter((code) =>
      !source.includes(`"${code}"`) && !source.includes(`'${code}'`)
    );
    assert.deepEqual(unknown, [], "codes that appear nowhere in supabase/functions or the migrations");
    for (const [code, { status }] of Object.entries(ERROR_CODES)) {
      const thrown = [...source.matchAll(new RegExp(`ApiError\\(\\s*(\\d{3}),\\s*"${code}"`, "g"))].map((m) => +m[1]);
      if (thrown.length > 0) assert.ok(thrown.includes(status), `${code}: documented ${status}, thrown ${thrown}`);
    }
  });

  await t.step("every route named in ROUTE_ERRORS exists in the document", () => {
    for (const key of Object.keys(ROUTE_ERRORS)) {
      const [method, path] = key.split(" ");
      assert.ok(doc.paths[path]?.[method], `${key} is an operation`);
    }
  });

  await t.step("every operation lists 4xx codes, each with an example of that code", () => {
    const examples = doc.components.examples as Record<string, { value: { error: { code: string } } }>;
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        const responses = operation.responses as Record<string, Json>;
        const clientErrors = Object.keys(responses).filter((status) => status.startsWith("4"));
        assert.ok(clientErrors.length > 0, `${method} ${path} documents 4xx responses`);
        for (const status of clientErrors) {
          const media = (responses[status].content as Record<string, Json>)["application/json"];
          const refs = Object.entries(media.examples as Record<string, { $ref: string }>);
          assert.ok(refs.length > 0);
          for (const [code, { $ref }] of refs) {
            const example = examples[$ref.split("/").pop()!];
            assert.equal(example.value.error.code, code);
            assert.equal(String(ERROR_CODES[code].status), status, `${method} ${path} ${code}`);
            assert.ok(String(responses[status].description).includes(`\`${code}\``));
          }
        }
      }
    }
    assert.ok(JSON.stringify(doc.paths["/send-email"].post.responses).includes("smtp_recipients_rejected"));
  });
});

Deno.test("operations are grouped by function", () => {
  const functions = Object.keys(functionHandlers).sort();
  assert.deepEqual(doc.tags.map((tag) => tag.name).sort(), functions);
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const operation of Object.values(methods)) {
      assert.deepEqual(operation.tags, [path.split("/")[1]], path);
    }
  }
});

Deno.test("examples are what the functions accept and answer", async (t) => {
  const requests: Record<string, { parse(value: unknown): unknown }> = {
    SendEmailRequest: sendEmailRequest,
    SendBulkRequest: sendBulkRequest,
    CreateConfigRequest: createConfigRequest,
    UpdateConfigRequest: updateConfigRequest,
    CreateTemplateRequest: createTemplateRequest,
    UpdateTemplateRequest: updateTemplateRequest,
    PreviewTemplateRequest: previewTemplateRequest,
    UploadAttachmentRequest: uploadAttachmentRequest,
    ImapSettingsRequest: imapSettingsRequest,
    CreateWebhookRequest: createWebhookRequest,
    UpdateWebhookRequest: updateWebhookRequest,
  };
  await t.step("request examples parse with the request schemas", () => {
    assert.deepEqual(Object.keys(REQUEST_EXAMPLES).sort(), Object.keys(requests).sort());
    for (const [name, example] of Object.entries(REQUEST_EXAMPLES)) requests[name].parse(example);
  });
  await t.step("response examples parse with the strict response schemas", () => {
    for (const [name, example] of Object.entries(RESPONSE_EXAMPLES)) {
      RESPONSES[name as keyof typeof RESPONSES].parse(example);
    }
  });
  await t.step("the document puts them on the operations' bodies", () => {
    const create = doc.paths["/smtp-configs"].post;
    const body = (create.requestBody as { content: Record<string, { example: { port: number } }> }).content;
    assert.equal(body["application/json"].example.port, 465);
    const sent = (doc.paths["/send-email"].post.responses as Record<string, Json>)["200"];
    assert.equal((sent.content as Record<string, { example: Json }>)["application/json"].example.status, "sent");
  });
  await t.step("no zod safe-integer placeholder bounds anywhere in openapi.json", async () => {
    const text = await Deno.readTextFile(new URL("../openapi.json", import.meta.url));
    assert.doesNotMatch(text, /9007199254740991/);
    assert.doesNotMatch(JSON.stringify(doc), /9007199254740991/);
    // Real bounds stay.
    const schemas = doc.components.schemas as Record<string, { properties: Record<string, Json> }>;
    assert.equal(schemas.CreateConfigRequest.properties.port.maximum, 65535);
  });
  await t.step("the document says how to get a token", () => {
    const info = (doc as unknown as { info: { description: string } }).info.description;
    assert.match(info, /npm run token/);
    assert.match(info, /supabase\.auth\.getSession\(\)/);
  });
});

// The OpenAPI document: served without a token, naming the project's URL, covering every
// function, with request schemas that accept what the functions accept.
import assert from "node:assert/strict";
import { functionHandlers } from "../local/functions.ts";
import { startApiReference } from "../local/api_reference.ts";
import { freePort } from "../local/postgres.ts";
import { startTestStack } from "./harness.ts";

Deno.test({
  name: "openapi",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const stack = await startTestStack();
    try {
      const res = await fetch(`${stack.url}/functions/v1/openapi`);
      assert.equal(res.status, 200);
      const doc = await res.json();
      assert.equal(doc.openapi, "3.1.0");
      assert.deepEqual(doc.servers, [{ url: `${stack.url}/functions/v1` }]);
      const paths = Object.keys(doc.paths);
      for (const name of Object.keys(functionHandlers)) {
        assert.ok(paths.some((p) => p === `/${name}` || p.startsWith(`/${name}/`)), `${name} is documented`);
      }
      const send = doc.components.schemas.SendEmailRequest;
      assert.deepEqual(send.required, ["to"]);
      assert.equal(send.additionalProperties, false);
      assert.ok(send.properties.to.anyOf, "to takes one recipient or a list");
      assert.equal(
        doc.paths["/send-email"].post.requestBody.content["application/json"].schema.$ref,
        "#/components/schemas/SendEmailRequest",
      );
      // host: required for SMTP, filled in by a preset, fixed for the HTTPS transports (checked at parse).
      assert.deepEqual(doc.components.schemas.CreateConfigRequest.required, ["name", "from_email"]);
      const post = await fetch(`${stack.url}/functions/v1/openapi`, { method: "POST" });
      assert.equal(post.status, 405);
      await post.body?.cancel();

      // The dev stack's reference page: Swagger UI's own files, pointed at this document.
      const docs = await startApiReference(freePort(), `${stack.url}/functions/v1/openapi`);
      try {
        const page = await (await fetch(`http://127.0.0.1:${docs.port}/`)).text();
        assert.match(page, new RegExp(`url: "${stack.url}/functions/v1/openapi"`));
        const bundle = await fetch(`http://127.0.0.1:${docs.port}/swagger-ui-bundle.js`);
        assert.equal(bundle.status, 200);
        assert.match(await bundle.text(), /SwaggerUIBundle/);
        const css = await fetch(`http://127.0.0.1:${docs.port}/swagger-ui.css`);
        assert.match(css.headers.get("content-type") ?? "", /text\/css/);
        await css.body?.cancel();
        const other = await fetch(`http://127.0.0.1:${docs.port}/../deno.json`);
        assert.equal(other.status, 404);
        await other.body?.cancel();
      } finally {
        await docs.close();
      }
    } finally {
      await stack.close();
    }
  },
});

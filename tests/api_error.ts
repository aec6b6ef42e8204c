// Shared assertion for unit tests: `fn` throws the API's error with this status and code.
import assert from "node:assert/strict";
import { ApiError } from "../supabase/functions/_shared/http.ts";

/** Run `fn`, assert it throws `ApiError(status, code)`, and return the error for further checks. */
export function apiError(fn: () => unknown, status: number, code: string): ApiError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ApiError, `expected ApiError, got ${error}`);
    assert.equal(error.status, status);
    assert.equal(error.code, code);
    return error;
  }
  throw new Error(`expected ApiError ${status} ${code}`);
}

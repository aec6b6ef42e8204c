/// <reference lib="dom" />
// Loading what a page shows: the result, the error and whether it is on its way.
import { useEffect, useState } from "preact/hooks";

/** Run `load` when `deps` change; a result that arrives after the page moved on is dropped. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]) {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, loading: false }),
      (error) => live && setState({ error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, deps);
  return state;
}

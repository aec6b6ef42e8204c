/// <reference lib="dom" />
// Loading what a page shows: the result, the error and whether it is on its way.
import { useEffect, useRef, useState } from "preact/hooks";

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

/**
 * A list read a page at a time: the first page when `deps` change, then `more()` appends the
 * page after the last one (`next` says how to ask for it, or null at the end). A page asked for
 * before `deps` changed is dropped when it arrives.
 */
export function usePages<P>(first: () => Promise<P>, next: (last: P) => (() => Promise<P>) | null, deps: unknown[]) {
  const start = useLoad(first, deps);
  // Pages after the first, with the first page they follow: a new first page (new filters, a
  // refresh) drops them in the same render, so a stale or empty list never shows.
  const [extra, setExtra] = useState<{ base?: P; pages: P[] }>({ pages: [] });
  const [more, setMore] = useState<{ loading: boolean; error?: unknown }>({ loading: false });
  const busy = useRef(false);
  const base = start.loading ? undefined : start.data;
  const pages = base === undefined ? [] : [base, ...(extra.base === base ? extra.pages : [])];
  const last = pages.at(-1);
  const ask = last ? next(last) : null;
  const loadMore = async () => {
    if (!ask || busy.current) return;
    busy.current = true;
    setMore({ loading: true });
    try {
      const page = await ask();
      setExtra((e) => e.base === base ? { base, pages: [...e.pages, page] } : { base, pages: [page] });
      setMore({ loading: false });
    } catch (error) {
      setMore({ loading: false, error });
    } finally {
      busy.current = false;
    }
  };
  return {
    pages,
    error: start.error,
    loading: start.loading,
    hasMore: ask !== null,
    loadMore,
    moreLoading: more.loading,
    moreError: more.error,
  };
}

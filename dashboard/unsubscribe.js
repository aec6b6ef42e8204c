// The unsubscribe confirmation page: the link's token (from the query) goes back to the
// project's public `unsubscribe` function in a POST, the one-click request RFC 8058 defines.
// What the page shows of the token is only read here; the function checks its signature.
const what = document.getElementById("what");
const form = document.getElementById("confirm");
const token = new URLSearchParams(location.search).get("token") ?? "";

function addressIn(token) {
  try {
    const payload = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    const [, address, topic] = JSON.parse(
      new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))),
    );
    return typeof address === "string" ? { address, topic: typeof topic === "string" ? topic : null } : null;
  } catch {
    return null;
  }
}

const claim = addressIn(token);
if (!claim) {
  what.textContent = "This unsubscribe link is incomplete. Use the link from the email as it came.";
} else {
  const { supabase_url } = await (await fetch("./config.json", { cache: "no-store" })).json();
  form.action = `${supabase_url}/functions/v1/unsubscribe?token=${encodeURIComponent(token)}`;
  what.textContent = `Stop email to ${claim.address} from this sender${claim.topic ? ` (${claim.topic})` : ""}?`;
  form.querySelector("button").textContent = `Unsubscribe ${claim.address}`;
  form.hidden = false;
}

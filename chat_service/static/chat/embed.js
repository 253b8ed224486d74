// The one script a marketplace page includes (see docs/embedding.md):
//
//   <link rel="stylesheet" href="https://chat.example.com/static/chat/chat.css">
//   <script type="module" src="https://chat.example.com/static/chat/embed.js"
//           data-token="<JWT minted by the marketplace>"></script>
//   <seller-status seller-id="seller-7" order-id="A10001"></seller-status>
//   <order-chat order-id="A10001"></order-chat>
//
// The service is the origin the script was loaded from. Without data-token the socket and the
// HTTP calls use the session cookie (same-site pages such as the demo's own).

import { configure, getConnection } from "./connection.js";
import { installOfflineBanner } from "./ui.js";

const here = new URL(import.meta.url);
const tag = [...document.querySelectorAll("script[type=module][src]")]
  .find((s) => new URL(s.src, location.href).href === here.href);
configure({
  server: (tag && tag.dataset.server) || here.origin,
  ...(tag && tag.dataset.token ? { token: tag.dataset.token } : {}),
});

export const connection = getConnection();
installOfflineBanner(connection);

// Defined after the connection is configured: the elements use it as soon as they connect.
await import("./seller-status.js");
await import("./order-chat.js");

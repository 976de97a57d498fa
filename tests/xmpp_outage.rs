//! XEP-0455 Service Outage Status, as slixmpp reads it: the addresses of
//! `xmpp.outage_status_urls` in the server's disco#info, and none when none are configured.
//! slixmpp's `xep_0455` plugin (1.10 and later) is used when installed; with the slixmpp CI
//! pins (1.8.5, before the plugin) the script does the plugin's own look-up through slixmpp's
//! `xep_0030` and `xep_0128` plugins: the server's info, its `urn:xmpp:sos:0` forms, their
//! `external-status-addresses` values.

use crate::common::python;
use crate::common::{test_config, TestServer, PASSWORD};

const SLIXMPP_SOS: &str = r#"
import asyncio, ssl, sys
import slixmpp
from slixmpp.plugins.xep_0004 import Form

jid, password, host, port = sys.argv[1:5]

class Bot(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.addresses = None
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda e: self.disconnect())

    async def start(self, event):
        try:
            if "xep_0455" in self.plugin:
                self.addresses = await self["xep_0455"].get_external_status_addresses(timeout=10)
            else:
                info = await self["xep_0030"].get_info(jid=self.boundjid.host, timeout=10)
                found = []
                for form in info["disco_info"].iterables:
                    if not isinstance(form, Form):
                        continue
                    values = form.get_values()
                    if values.get("FORM_TYPE") == ["urn:xmpp:sos:0"]:
                        found.extend(values.get("external-status-addresses", []))
                self.addresses = found
        except Exception as e:
            print("ERROR", repr(e), file=sys.stderr)
        finally:
            self.disconnect()

bot = Bot()
bot.register_plugin("xep_0030")
bot.register_plugin("xep_0128")
try:
    bot.register_plugin("xep_0455")
except Exception:
    pass
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
bot.ssl_context = ctx
bot.connect((host, int(port)), force_starttls=True)
loop = asyncio.get_event_loop()
loop.run_until_complete(asyncio.wait_for(bot.disconnected, 30))
if bot.addresses is None:
    sys.exit(1)
for a in bot.addresses:
    print("ADDRESS", a)
"#;

/// The addresses slixmpp finds on a server started with `urls` configured.
async fn addresses_found(urls: &[&str], login: &str) -> Option<Vec<String>> {
    if !python::has("slixmpp", python::SLIXMPP) {
        return None;
    }
    let mut c = test_config();
    c.xmpp.outage_status_urls = urls.iter().map(|u| u.to_string()).collect();
    let s = TestServer::start_with(c).await;
    let (local, _) = s.chat_user(login).await;
    let stdout = python::run_ok(
        SLIXMPP_SOS,
        [
            format!("{local}@localhost"),
            PASSWORD.to_string(),
            s.xmpp.tcp.ip().to_string(),
            s.xmpp.tcp.port().to_string(),
        ],
        60,
    )
    .await;
    Some(
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix("ADDRESS "))
            .map(str::to_owned)
            .collect(),
    )
}

#[tokio::test]
async fn slixmpp_finds_the_configured_outage_status_addresses() {
    let urls = [
        "https://status.example.org/xmpp.json",
        "https://mirror.example.net/status.json",
    ];
    if let Some(found) = addresses_found(&urls, "sos_set").await {
        assert_eq!(found, urls);
    }
}

#[tokio::test]
async fn without_addresses_the_server_advertises_no_outage_status() {
    if let Some(found) = addresses_found(&[], "sos_none").await {
        assert!(found.is_empty(), "{found:?}");
    }
}

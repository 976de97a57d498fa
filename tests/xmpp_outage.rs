//! XEP-0455 Service Outage Status, as slixmpp's own `xep_0455` plugin reads it: the addresses
//! of `xmpp.outage_status_urls` in the server's disco#info, and none when none are configured.

use std::time::Duration;

use crate::common::python;
use crate::common::{test_config, TestServer, PASSWORD};

const SLIXMPP_SOS: &str = r#"
import asyncio, ssl, sys
import slixmpp

jid, password, host, port = sys.argv[1:5]

class Bot(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.addresses = None
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda e: self.disconnect())

    async def start(self, event):
        try:
            self.addresses = await self["xep_0455"].get_external_status_addresses(timeout=10)
        except Exception as e:
            print("ERROR", repr(e), file=sys.stderr)
        finally:
            self.disconnect()

bot = Bot()
bot.register_plugin("xep_0030")
bot.register_plugin("xep_0128")
bot.register_plugin("xep_0455")
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
    let out = python::script(
        SLIXMPP_SOS,
        [
            format!("{local}@localhost"),
            PASSWORD.to_string(),
            s.xmpp.tcp.ip().to_string(),
            s.xmpp.tcp.port().to_string(),
        ],
    )
    .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("slixmpp finished")
        .expect("slixmpp output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "slixmpp failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

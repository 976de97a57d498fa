//! XEP-0045 reading helpers shared by the room tests: who is online, and what a room's
//! presence or error says (status codes, the `<item/>`, the error condition).

use parley::xmpp::stream::Element;

use super::xmpp::{Client, Via};
use super::{TestServer, PASSWORD};

pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const CLIENT: &str = "jabber:client";

/// User `uid` logged in over TCP.
pub async fn online(srv: &TestServer, uid: i64) -> Client {
    Client::login(srv.xmpp, Via::Tcp, &srv.local(uid), PASSWORD).await
}

/// The `<status code/>`s of a room presence.
pub fn codes(p: &Element) -> Vec<String> {
    p.child("x", MUC_USER)
        .map(|x| {
            x.elements()
                .filter(|e| e.name == "status")
                .filter_map(|e| e.attr("code").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The `<item/>` of a room presence (panics without one).
pub fn item(p: &Element) -> Element {
    p.child("x", MUC_USER)
        .and_then(|x| x.child("item", MUC_USER))
        .cloned()
        .unwrap_or_else(|| panic!("no item in {p:?}"))
}

/// The defined condition of an error stanza (panics on anything else).
pub fn condition(e: &Element) -> String {
    e.child("error", CLIENT)
        .and_then(|err| err.elements().next())
        .map(|c| c.name.clone())
        .unwrap_or_else(|| panic!("not an error: {e:?}"))
}

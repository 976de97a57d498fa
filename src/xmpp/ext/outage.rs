//! XEP-0455 Service Outage Status: the server's disco#info carries a `urn:xmpp:sos:0` form
//! naming where clients read the service's status when they cannot reach it
//! (`xmpp.outage_status_urls`). Parley only advertises the addresses: the status document
//! lives elsewhere (a server that is down cannot serve its own outage notice), written by the
//! operator. Must not fetch or serve the document.

use crate::xmpp::dispatch::{Extension, Spec};
use crate::xmpp::ns;
use crate::xmpp::stream::Element;

pub const EXTENSION: Extension = Extension::documented(&[], SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[Spec {
    name: "XEP-0455 Service Outage Status",
    status: "complete",
    notes: "the server's disco#info names `xmpp.outage_status_urls` in a `urn:xmpp:sos:0` form; the status document is the operator's, hosted elsewhere",
    ejabberd: "no",
    prosody: "community module",
}];

/// The server's XEP-0128 extension form (XEP-0455 §4); `None` when no address is configured.
pub fn disco_form(urls: &[String]) -> Option<Element> {
    if urls.is_empty() {
        return None;
    }
    let field = Element::new("field", ns::DATA_FORMS).with_attr("var", "external-status-addresses");
    let field = urls.iter().fold(field, |f, u| {
        f.with_child(Element::new("value", ns::DATA_FORMS).with_text(u.as_str()))
    });
    Some(
        Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "result")
            .with_child(
                Element::new("field", ns::DATA_FORMS)
                    .with_attr("var", "FORM_TYPE")
                    .with_attr("type", "hidden")
                    .with_child(Element::new("value", ns::DATA_FORMS).with_text(ns::SOS)),
            )
            .with_child(field),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_addresses_advertise_no_form() {
        assert!(disco_form(&[]).is_none());
    }

    #[test]
    fn every_address_is_a_value_of_one_field() {
        let urls = [
            "https://status.example/a.json".to_owned(),
            "https://b.example/s".to_owned(),
        ];
        let form = disco_form(&urls).expect("a form");
        let field = form
            .elements()
            .find(|f| f.attr("var") == Some("external-status-addresses"))
            .expect("the addresses field");
        let values: Vec<String> = field.elements().map(|v| v.text()).collect();
        assert_eq!(values, urls);
    }
}

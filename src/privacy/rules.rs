//! Privacy rules and their evaluation (pure): XEP-0016 items, the XEP-0191 block list, and
//! which of them decides for one stanza. No I/O, no cache, no stanza building.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::db::privacy::{Action, Kinds, Matcher, PrivacyItem, Stored};
use crate::model::jid::Jid;
use crate::model::UserKey;

/// A user's roster as the `group` and `subscription` items see it: bare JID → (subscription,
/// groups).
pub type RosterView = HashMap<String, (String, Vec<String>)>;

/// Everything about one user's privacy, as enforced.
#[derive(Debug, Default)]
pub struct Rules {
    pub lists: BTreeMap<String, Vec<PrivacyItem>>,
    pub default: Option<String>,
    /// XEP-0191 block list (normalised JIDs).
    pub blocked: BTreeSet<String>,
    /// Loaded only when a list has `group` or `subscription` items.
    roster: RosterView,
}

impl Rules {
    pub(super) fn from_stored(s: Stored, roster: RosterView) -> Rules {
        Rules {
            lists: s.lists,
            default: s.default,
            blocked: s.blocked.into_iter().collect(),
            roster,
        }
    }
}

/// Who a stanza comes from or goes to, as the matching rules see it: the JIDs an item `value`
/// may equal (XEP-0016 §2.1: full, bare, domain/resource, domain) and the roster key.
pub struct Subject {
    candidates: Vec<String>,
    roster_key: Option<String>,
}

impl Subject {
    pub fn of_jid(jid: &Jid) -> Subject {
        let mut candidates = vec![jid.to_string()];
        let domain = jid.domain.clone();
        if jid.resource.is_some() && jid.local.is_some() {
            candidates.push(jid.bare().to_string());
        }
        if let (Some(r), Some(_)) = (&jid.resource, &jid.local) {
            candidates.push(format!("{domain}/{r}"));
        }
        if jid.local.is_some() || jid.resource.is_some() {
            candidates.push(domain);
        }
        let roster_key = jid.local.as_ref().map(|_| jid.bare().to_string());
        Subject {
            candidates,
            roster_key,
        }
    }

    pub fn of_user(user: UserKey, domain: &str) -> Subject {
        Subject::of_jid(&user.bare_jid(domain))
    }

    /// Adds another JID the same party is known by (a group occupant JID).
    pub(super) fn also(mut self, jid: &Jid) -> Subject {
        for c in Subject::of_jid(jid).candidates {
            if !self.candidates.contains(&c) {
                self.candidates.push(c);
            }
        }
        self
    }

    fn is(&self, value: &str) -> bool {
        self.candidates.iter().any(|c| c == value)
    }
}

/// Which traffic an evaluation is about, from the list owner's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Stanzas coming to the owner: one of `Kinds::MESSAGE`, `PRESENCE_IN`, `IQ`.
    Inbound(u8),
    /// Presence the owner sends (`presence-out` items and items without children).
    PresenceOut,
    /// Messages and iqs the owner sends: only items without children (mutual block) apply.
    StanzaOut,
}

fn applies(kinds: Kinds, traffic: Traffic) -> bool {
    kinds == Kinds::ALL
        || match traffic {
            Traffic::Inbound(bit) => kinds.0 & bit != 0,
            Traffic::PresenceOut => kinds.0 & Kinds::PRESENCE_OUT != 0,
            Traffic::StanzaOut => false,
        }
}

fn matches(m: &Matcher, who: &Subject, roster: &RosterView) -> bool {
    let entry = who.roster_key.as_ref().and_then(|k| roster.get(k));
    match m {
        Matcher::Any => true,
        Matcher::Jid(v) => who.is(v),
        Matcher::Group(g) => entry.is_some_and(|(_, groups)| groups.contains(g)),
        Matcher::Subscription(s) => entry.map_or("none", |(sub, _)| sub.as_str()) == s,
    }
}

/// XEP-0016 §2.1: the items that apply to this traffic, in order; the first that matches
/// decides; none matching allows.
pub fn evaluate(
    items: &[PrivacyItem],
    who: &Subject,
    traffic: Traffic,
    roster: &RosterView,
) -> Action {
    items
        .iter()
        .filter(|i| applies(i.kinds, traffic))
        .find(|i| matches(&i.matcher, who, roster))
        .map_or(Action::Allow, |i| i.action)
}

impl Rules {
    /// Whether the owner (with `active` as the effective list name, if any) refuses `traffic`
    /// with `who`. The block list comes first and covers everything.
    pub(super) fn denies(&self, active: Option<&str>, who: &Subject, traffic: Traffic) -> bool {
        if who.candidates.iter().any(|c| self.blocked.contains(c)) {
            return true;
        }
        let name = active.or(self.default.as_deref());
        let Some(items) = name.and_then(|n| self.lists.get(n)) else {
            return false;
        };
        evaluate(items, who, traffic, &self.roster) == Action::Deny
    }

    pub(super) fn needs_roster(s: &Stored) -> bool {
        s.lists
            .values()
            .flatten()
            .any(|i| matches!(i.matcher, Matcher::Group(_) | Matcher::Subscription(_)))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn item(order: i64, m: Matcher, action: Action, kinds: u8) -> PrivacyItem {
        PrivacyItem {
            order,
            matcher: m,
            action,
            kinds: Kinds(kinds),
        }
    }

    pub(crate) fn jid(s: &str) -> Matcher {
        Matcher::Jid(s.into())
    }

    fn bob() -> Subject {
        Subject::of_jid(&Jid::parse("2-7@localhost").unwrap())
    }

    pub(crate) const MSG: Traffic = Traffic::Inbound(Kinds::MESSAGE);
    const ALL4: u8 = 15;

    #[test]
    fn no_matching_item_allows() {
        let items = [item(1, jid("3-7@localhost"), Action::Deny, 0)];
        let r = RosterView::new();
        assert_eq!(evaluate(&items, &bob(), MSG, &r), Action::Allow);
        assert_eq!(evaluate(&[], &bob(), MSG, &r), Action::Allow);
    }

    #[test]
    fn first_match_in_order_wins_allow_before_deny() {
        let r = RosterView::new();
        let mut items = vec![
            item(1, jid("2-7@localhost"), Action::Allow, 0),
            item(2, Matcher::Any, Action::Deny, 0),
        ];
        assert_eq!(evaluate(&items, &bob(), MSG, &r), Action::Allow);
        let carol = Subject::of_jid(&Jid::parse("3-7@localhost").unwrap());
        assert_eq!(evaluate(&items, &carol, MSG, &r), Action::Deny);
        // Reversed order: the fall-through deny comes first and wins.
        items.reverse();
        assert_eq!(evaluate(&items, &bob(), MSG, &r), Action::Deny);
    }

    #[test]
    fn items_with_children_apply_only_to_those_kinds() {
        let r = RosterView::new();
        let items = [item(
            1,
            jid("2-7@localhost"),
            Action::Deny,
            Kinds::PRESENCE_IN,
        )];
        assert_eq!(evaluate(&items, &bob(), MSG, &r), Action::Allow);
        let pin = Traffic::Inbound(Kinds::PRESENCE_IN);
        assert_eq!(evaluate(&items, &bob(), pin, &r), Action::Deny);
    }

    #[test]
    fn only_items_without_children_refuse_the_owners_own_messages() {
        let r = RosterView::new();
        let deny = [item(1, jid("2-7@localhost"), Action::Deny, ALL4)];
        assert_eq!(evaluate(&deny, &bob(), MSG, &r), Action::Deny);
        assert_eq!(
            evaluate(&deny, &bob(), Traffic::StanzaOut, &r),
            Action::Allow
        );
        let mutual = [item(1, jid("2-7@localhost"), Action::Deny, 0)];
        assert_eq!(
            evaluate(&mutual, &bob(), Traffic::StanzaOut, &r),
            Action::Deny
        );
        assert_eq!(
            evaluate(&deny, &bob(), Traffic::PresenceOut, &r),
            Action::Deny
        );
    }

    #[test]
    fn jid_items_match_full_bare_domain_resource_and_domain() {
        let r = RosterView::new();
        let occ = Subject::of_jid(&Jid::parse("7_abc@muc.localhost/2").unwrap());
        for v in [
            "7_abc@muc.localhost/2",
            "7_abc@muc.localhost",
            "muc.localhost/2",
            "muc.localhost",
        ] {
            let items = [item(1, jid(v), Action::Deny, 0)];
            assert_eq!(evaluate(&items, &occ, MSG, &r), Action::Deny, "{v}");
        }
        let items = [item(1, jid("muc.localhost/3"), Action::Deny, 0)];
        assert_eq!(evaluate(&items, &occ, MSG, &r), Action::Allow);
    }

    #[test]
    fn group_and_subscription_items_read_the_roster() {
        let mut r = RosterView::new();
        r.insert(
            "2-7@localhost".into(),
            ("both".into(), vec!["friends".into()]),
        );
        let g = [item(1, Matcher::Group("friends".into()), Action::Deny, 0)];
        assert_eq!(evaluate(&g, &bob(), MSG, &r), Action::Deny);
        let s = [item(
            1,
            Matcher::Subscription("none".into()),
            Action::Deny,
            0,
        )];
        assert_eq!(evaluate(&s, &bob(), MSG, &r), Action::Allow);
        let carol = Subject::of_jid(&Jid::parse("3-7@localhost").unwrap());
        assert_eq!(evaluate(&s, &carol, MSG, &r), Action::Deny);
    }

    #[test]
    fn the_block_list_comes_before_any_list() {
        let mut rules = Rules::default();
        rules
            .lists
            .insert("l".into(), vec![item(1, Matcher::Any, Action::Allow, 0)]);
        rules.default = Some("l".into());
        assert!(!rules.denies(None, &bob(), MSG));
        rules.blocked.insert("2-7@localhost".into());
        assert!(rules.denies(None, &bob(), MSG));
        assert!(rules.denies(None, &bob(), Traffic::StanzaOut));
    }
}

//! The subscription index: a trie of topic-filter levels, so a publish is matched against only
//! the filters that can match it, whatever the number of connected devices.

use std::collections::HashMap;

/// Subscribers of type `S`, keyed by connection id, stored under their topic filters.
#[derive(Debug)]
pub struct TopicTree<S> {
    root: Node<S>,
}

#[derive(Debug)]
struct Node<S> {
    children: HashMap<String, Node<S>>,
    /// Subscribers whose filter ends at this level.
    exact: HashMap<u64, S>,
    /// Subscribers whose filter ends with `#` below this level.
    multi: HashMap<u64, S>,
}

impl<S> Default for Node<S> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            exact: HashMap::new(),
            multi: HashMap::new(),
        }
    }
}

impl<S> Default for TopicTree<S> {
    fn default() -> Self {
        Self {
            root: Node::default(),
        }
    }
}

impl<S: Clone> TopicTree<S> {
    /// Adds (or replaces) connection `conn`'s subscription to `filter`.
    pub fn insert(&mut self, filter: &str, conn: u64, subscriber: S) {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            if level == "#" {
                node.multi.insert(conn, subscriber);
                return;
            }
            node = node.children.entry(level.to_owned()).or_default();
        }
        node.exact.insert(conn, subscriber);
    }

    /// Removes connection `conn`'s subscription to `filter`, pruning empty branches.
    pub fn remove(&mut self, filter: &str, conn: u64) {
        fn walk<S>(node: &mut Node<S>, levels: &[&str], conn: u64) {
            match levels {
                [] => {
                    node.exact.remove(&conn);
                }
                ["#", ..] => {
                    node.multi.remove(&conn);
                }
                [level, rest @ ..] => {
                    if let Some(child) = node.children.get_mut(*level) {
                        walk(child, rest, conn);
                        if child.exact.is_empty()
                            && child.multi.is_empty()
                            && child.children.is_empty()
                        {
                            node.children.remove(*level);
                        }
                    }
                }
            }
        }
        let levels: Vec<&str> = filter.split('/').collect();
        walk(&mut self.root, &levels, conn);
    }

    /// Every subscriber whose filter matches `topic`, once per connection.
    ///
    /// Per MQTT 3.1.1 §4.7.2, a topic starting with `$` is not matched by a filter whose first
    /// level is a wildcard.
    pub fn matches(&self, topic: &str) -> Vec<(u64, S)> {
        fn walk<S: Clone>(node: &Node<S>, levels: &[&str], first: bool, out: &mut HashMap<u64, S>) {
            let dollar = first && levels.first().is_some_and(|l| l.starts_with('$'));
            if !dollar {
                out.extend(node.multi.iter().map(|(c, s)| (*c, s.clone())));
            }
            match levels {
                [] => out.extend(node.exact.iter().map(|(c, s)| (*c, s.clone()))),
                [level, rest @ ..] => {
                    if let Some(child) = node.children.get(*level) {
                        walk(child, rest, false, out);
                    }
                    if !dollar && let Some(child) = node.children.get("+") {
                        walk(child, rest, false, out);
                    }
                }
            }
        }
        let levels: Vec<&str> = topic.split('/').collect();
        let mut out = HashMap::new();
        walk(&self.root, &levels, true, &mut out);
        out.into_iter().collect()
    }
}

/// Whether `filter` is a well-formed MQTT topic filter (wildcards only as whole levels, `#` last).
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains('#') && !l.contains('+'),
    })
}

/// Whether `topic` is a well-formed topic name to publish to (no wildcards).
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['#', '+', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matched(tree: &TopicTree<&'static str>, topic: &str) -> Vec<&'static str> {
        let mut names: Vec<_> = tree.matches(topic).into_iter().map(|(_, s)| s).collect();
        names.sort();
        names
    }

    #[test]
    fn wildcards_match_whole_levels() {
        let mut tree = TopicTree::default();
        tree.insert("$aws/things/a/jobs/notify-next", 1, "exact");
        tree.insert("$aws/things/a/jobs/+/update/accepted", 2, "plus");
        tree.insert("$aws/events/#", 3, "events");
        tree.insert("#", 4, "all");
        tree.insert("+/x", 5, "plus-first");

        assert_eq!(matched(&tree, "$aws/things/a/jobs/notify-next"), ["exact"]);
        assert_eq!(
            matched(&tree, "$aws/things/a/jobs/j1/update/accepted"),
            ["plus"]
        );
        assert_eq!(
            matched(&tree, "$aws/things/b/jobs/j1/update/accepted"),
            Vec::<&str>::new()
        );
        assert_eq!(matched(&tree, "$aws/events/job/j1/completed"), ["events"]);
        assert_eq!(matched(&tree, "$aws/events"), ["events"]);
        assert_eq!(matched(&tree, "plain/x"), ["all", "plus-first"]);
    }

    #[test]
    fn remove_prunes_and_keeps_others() {
        let mut tree = TopicTree::default();
        tree.insert("a/b", 1, "one");
        tree.insert("a/b", 2, "two");
        tree.remove("a/b", 1);
        assert_eq!(matched(&tree, "a/b"), ["two"]);
        tree.remove("a/b", 2);
        assert!(tree.root.children.is_empty());
    }

    #[test]
    fn filter_validation() {
        assert!(valid_filter("$aws/things/+/jobs/#"));
        assert!(!valid_filter("a/#/b"));
        assert!(!valid_filter("a/b+"));
        assert!(!valid_filter(""));
        assert!(valid_topic("a/b"));
        assert!(!valid_topic("a/+"));
    }
}

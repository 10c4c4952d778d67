//! What tells two shards' runs apart, and how shards split the customers.

use super::*;

#[test]
fn two_campaigns_differ_at_the_first_differing_path() {
    let a = serde_json::json!({"name": "m", "channels": {"email": {"max_contacts": 1500},
        "sms": {"max_contacts": 800}}, "offers": ["a", "b"]});
    let mut b = a.clone();
    b["channels"]["email"]["max_contacts"] = serde_json::json!(2500);
    assert_eq!(
        first_difference(&a, &b, String::new()),
        (
            "channels.email.max_contacts".into(),
            "1500".into(),
            "2500".into()
        )
    );
    let mut c = a.clone();
    c["offers"][1] = serde_json::json!("c");
    assert_eq!(first_difference(&a, &c, String::new()).0, "offers[1]");
    let mut d = a.clone();
    d["control_group"] = serde_json::json!({"share": 0.1});
    assert_eq!(
        first_difference(&a, &d, String::new()),
        (
            "control_group".into(),
            "null".into(),
            "{\"share\":0.1}".into()
        )
    );
}

#[test]
fn shards_parse_and_split_every_customer_once() {
    assert_eq!("3/8".parse::<Shard>(), Ok(Shard { index: 3, count: 8 }));
    for bad in ["8/8", "1/0", "a/3", "3", "-1/4", "0/5000"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
    let shards: Vec<Shard> = (0..8).map(|index| Shard { index, count: 8 }).collect();
    let mut sizes = [0u32; 8];
    for i in 0..8000 {
        let id = format!("C{i:07}");
        let holders: Vec<_> = shards.iter().filter(|s| s.holds(&id)).collect();
        assert_eq!(holders.len(), 1, "{id}");
        sizes[holders[0].index as usize] += 1;
    }
    assert!(sizes.iter().all(|&n| (800..1200).contains(&n)), "{sizes:?}");
}

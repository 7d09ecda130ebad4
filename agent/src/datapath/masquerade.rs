//! Masquerade for traffic leaving the cluster: one rule per cluster
//! network in the nftables table `inet rcni-agent`.

use std::net::Ipv4Addr;

use ipnet::IpNet;

use super::{fnv1a, DatapathOptions, Report, Result, NFT_CHAIN, NFT_COMMENT_PREFIX, NFT_TABLE};
use crate::model::NodeInfo;

/// The cluster networks to masquerade from: the configured ones, else the
/// union of every pod CIDR (adjacent ones merged).
pub fn cluster_networks(opts: &DatapathOptions, nodes: &[NodeInfo]) -> Vec<IpNet> {
    if !opts.cluster_cidr.is_empty() {
        return opts.cluster_cidr.iter().map(IpNet::trunc).collect();
    }
    let all: Vec<IpNet> = nodes
        .iter()
        .flat_map(|n| n.pod_cidrs.iter().map(IpNet::trunc))
        .collect();
    IpNet::aggregate(&all)
}

/// The masquerade rules: per cluster network S, traffic from S to anything
/// outside every cluster network of S's family (and not multicast).
pub fn masquerade_rules(cluster: &[IpNet]) -> Vec<nft::Rule> {
    let mut rules = Vec::new();
    for s in cluster {
        let same: Vec<IpNet> = cluster
            .iter()
            .filter(|c| c.addr().is_ipv4() == s.addr().is_ipv4())
            .copied()
            .collect();
        let multicast: IpNet = if s.addr().is_ipv4() {
            IpNet::V4(ipnet::Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4))
        } else {
            IpNet::V6(ipnet::Ipv6Net::new_assert(
                [0xff00, 0, 0, 0, 0, 0, 0, 0].into(),
                8,
            ))
        };
        let mut r = nft::Rule::new().saddr(*s);
        let mut desc = format!("{s}");
        for d in same.iter().chain(std::iter::once(&multicast)) {
            r = r.daddr_not(*d);
            desc.push_str(&format!(" !{d}"));
        }
        rules.push(r.masquerade().comment(format!(
            "{NFT_COMMENT_PREFIX}{s}:{:016x}",
            fnv1a(desc.as_bytes())
        )));
    }
    rules
}

pub(super) fn sync_masquerade(cluster: &[IpNet], report: &mut Report) -> Result<()> {
    use nft::{Batch, Chain, ChainType, Family as NftFamily, Hook};
    let nft = nft::Nft::open()?;
    let rules = masquerade_rules(cluster);
    let want: Vec<Option<String>> = rules.iter().map(|r| r.comment.clone()).collect();
    let exists = nft.table_exists(NftFamily::Inet, NFT_TABLE)?;
    let have: Vec<Option<String>> = nft
        .rules(NftFamily::Inet, NFT_TABLE, Some(NFT_CHAIN))?
        .into_iter()
        .map(|r| r.comment)
        .collect();
    let chain_ok = exists
        && nft
            .chains(NftFamily::Inet, NFT_TABLE)?
            .iter()
            .any(|c| c.name == NFT_CHAIN);
    if rules.is_empty() {
        if exists {
            let mut b = Batch::new();
            b.del_table(NftFamily::Inet, NFT_TABLE);
            nft.commit(&b)?;
            report
                .changes
                .push(format!("deleted nft table inet {NFT_TABLE}"));
        }
        return Ok(());
    }
    if chain_ok && have == want {
        return Ok(());
    }
    let mut b = Batch::new();
    b.add_table(NftFamily::Inet, NFT_TABLE).add_chain(
        NftFamily::Inet,
        NFT_TABLE,
        &Chain::base(
            NFT_CHAIN,
            ChainType::Nat,
            Hook::Postrouting,
            nft::priority::SRCNAT,
        ),
    );
    b.flush_chain(NftFamily::Inet, NFT_TABLE, NFT_CHAIN);
    for r in &rules {
        b.add_rule(NftFamily::Inet, NFT_TABLE, NFT_CHAIN, r);
    }
    nft.commit(&b)?;
    let nets: Vec<String> = cluster.iter().map(|c| c.to_string()).collect();
    report.changes.push(format!(
        "set masquerade in inet {NFT_TABLE}: from {} to outside",
        nets.join(", ")
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::test_node;

    #[test]
    fn masquerade_excludes_the_cluster() {
        let nodes = [
            test_node("a", "192.168.50.10", &["10.244.0.0/24"]),
            test_node("b", "192.168.50.11", &["10.244.1.0/24", "fd44:2::/64"]),
            test_node("c", "192.168.60.10", &["10.244.3.0/24"]),
        ];
        let nets = cluster_networks(&DatapathOptions::default(), &nodes);
        let s: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
        assert_eq!(s, ["10.244.0.0/23", "10.244.3.0/24", "fd44:2::/64"]);
        let rules = masquerade_rules(&nets);
        assert_eq!(rules.len(), 3);
        let c0 = rules[0].comment.clone().unwrap();
        assert!(c0.starts_with("rcni-agent:10.244.0.0/23:"), "{c0}");
        // A different cluster changes the fingerprint of the same source.
        let other = masquerade_rules(&nets[..1]);
        assert_ne!(other[0].comment, rules[0].comment);

        let opts = DatapathOptions {
            cluster_cidr: vec!["10.244.0.0/16".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(
            cluster_networks(&opts, &nodes),
            vec!["10.244.0.0/16".parse::<IpNet>().unwrap()]
        );
    }
}

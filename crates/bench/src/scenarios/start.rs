//! Process start-up: VERSION, the floor under every call.

use crate::harness::*;
use crate::report::Figure;
use crate::Options;
use testutil::TestNs;

pub(crate) fn start_floor(sides: &[Side], o: &Options, node: &TestNs) -> Figure {
    let mut samples = Samples::new(sides.len());
    let env = Env {
        command: "VERSION",
        container_id: "",
        netns: "",
        ifname: "",
    };
    for i in 0..o.iterations + 3 {
        for s in ordered(sides, i) {
            let r = must(exec(s, "loopback", &env, "", node.ns()), "VERSION");
            if i >= 3 {
                samples.per_side[index_of(sides, s)].push(r.elapsed);
            }
        }
    }
    figure("process start (VERSION)", "ms", sides, &samples)
}

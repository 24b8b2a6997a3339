#![no_main]
//! Handshake messages: the first byte picks message 1, 2 or 3, the rest is the message.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mesh_secure::{
    Cert, Context, Identity, Initiator, RekeyPolicy, Responder, SpiffeId, TrustStore,
    cert::{CertKind, CertRequest},
    keys::SigningKey,
};
use rand::{SeedableRng as _, rngs::StdRng};

const NOW: u64 = 1_800_000_000;

struct Setup {
    trust: TrustStore,
    node: Identity,
    responder: Responder,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let akey = SigningKey::generate().expect("key");
        let aid = SpiffeId::trust_domain_id("fuzz.mesh").expect("id");
        let req = |kind, id, key| CertRequest { kind, serial: 1, not_before: 0, not_after: NOW * 2, id, key };
        let acert = Cert::issue(&akey, &req(CertKind::Authority, &aid, akey.public())).expect("cert");
        let trust = TrustStore::new(acert, "fuzz.mesh").expect("trust");
        let nkey = SigningKey::generate().expect("key");
        let nid = SpiffeId::node("fuzz.mesh", "n").expect("id");
        let ncert = Cert::issue(&akey, &req(CertKind::Node, &nid, nkey.public())).expect("cert");
        let node = Identity::new(ncert, nkey).expect("identity");
        let mut rng = StdRng::seed_from_u64(1);
        let responder = Responder::new(&mut rng);
        Setup { trust, node, responder }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, msg)) = data.split_first() else { return };
    let s = setup();
    let ctx = Context { identity: &s.node, trust: &s.trust, rekey: RekeyPolicy::default() };
    let mut rng = StdRng::seed_from_u64(2);
    match which % 3 {
        0 => drop(s.responder.respond(&ctx, msg, NOW * 1000, &mut rng)),
        1 => {
            // An initiator is used up by one message 2: a fresh one each time (cheap).
            let (init, _) = Initiator::start(&mut rng, None, NOW * 1000).expect("start");
            drop(init.finish(&ctx, msg, NOW * 1000));
        }
        _ => drop(s.responder.accept(&ctx, msg, NOW * 1000)),
    }
});

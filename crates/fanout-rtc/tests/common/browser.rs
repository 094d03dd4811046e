//! Browser-like peers for the endpoint's in-memory tests: each has its own ICE credentials and
//! certificate, offers a real captured SDP (its credentials written in) or answers the server's
//! offer, runs the controlling ICE side, DTLS as server and SRTP; a [`Net`] carries datagrams
//! between them and an [`Endpoint`] on a virtual clock.

use fanout_forward::{MediaKind, ParticipantId, RoomId};
use fanout_rtc::api::{MediaEvent, RoleLimits, SrtpPolicy, StreamRef};
use fanout_rtc::engine::dtls::{Dtls, DtlsOutput, DtlsRole, Fingerprint, Identity};
use fanout_rtc::engine::endpoint::Endpoint;
use fanout_rtc::engine::ice::{binding_request, check_binding_response};
use fanout_rtc::engine::sdp::Description;
use fanout_rtc::engine::srtp::{Profile, SrtpPair};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/sdp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Writes `ufrag`, `pwd` and `fingerprint` into every line of `sdp` that carries them.
pub fn with_credentials(sdp: &str, ufrag: &str, pwd: &str, fingerprint: &Fingerprint) -> String {
    sdp.split_inclusive('\n')
        .map(|l| {
            if l.starts_with("a=ice-ufrag:") {
                format!("a=ice-ufrag:{ufrag}\r\n")
            } else if l.starts_with("a=ice-pwd:") {
                format!("a=ice-pwd:{pwd}\r\n")
            } else if l.starts_with("a=fingerprint:") {
                format!("a=fingerprint:{fingerprint}\r\n")
            } else {
                l.to_string()
            }
        })
        .collect()
}

pub struct Browser {
    pub addr: SocketAddr,
    pub identity: Identity,
    pub ufrag: String,
    pub pwd: String,
    server_ice: Option<(String, String)>,
    pub dtls: Option<Dtls>,
    pub srtp: Option<Box<SrtpPair>>,
    /// Decrypted RTP and RTCP received, in order.
    pub received: Vec<Vec<u8>>,
    pub dtls_error: Option<String>,
}

impl Browser {
    pub fn new(n: u16) -> Browser {
        Browser {
            addr: SocketAddr::from(([10, 77, 0, 2], 40_000 + n)),
            identity: Identity::generate().expect("certificate"),
            ufrag: format!("br{n:02}"),
            pwd: format!("browserPassword{n:08}x"),
            server_ice: None,
            dtls: None,
            srtp: None,
            received: Vec::new(),
            dtls_error: None,
        }
    }

    /// A real captured offer with this browser's credentials in it.
    pub fn offer(&self, fixture_name: &str) -> String {
        with_credentials(
            &fixture(fixture_name),
            &self.ufrag,
            &self.pwd,
            &self.identity.fingerprint(),
        )
    }

    /// Takes the server's description (its answer to our offer, or its offer): ICE credentials
    /// and the certificate DTLS must see.
    pub fn take_server_description(&mut self, sdp: &str) {
        let d = Description::parse(sdp).unwrap_or_else(|e| panic!("server SDP: {e}\n{sdp}"));
        let t = d.transport().expect("an accepted section");
        self.server_ice = Some((t.ice.ufrag.clone(), t.ice.pwd.clone()));
        self.dtls = Some(
            Dtls::new(
                DtlsRole::Server,
                &self.identity,
                t.fingerprint,
                &[Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80],
            )
            .expect("DTLS"),
        );
    }

    /// Answers a subscriber offer as a browser would: passive, receiving, its own credentials.
    pub fn answer(&mut self, offer: &str) -> String {
        self.take_server_description(offer);
        let answer = offer
            .replace("a=setup:active", "a=setup:passive")
            .replace("a=sendonly", "a=recvonly")
            .replace("a=ice-lite\r\n", "");
        with_credentials(
            &answer,
            &self.ufrag,
            &self.pwd,
            &self.identity.fingerprint(),
        )
    }

    pub fn check(&self) -> Vec<u8> {
        let (ufrag, pwd) = self.server_ice.as_ref().expect("server credentials");
        binding_request(&format!("{ufrag}:{}", self.ufrag), pwd, true, 7).expect("request")
    }

    pub fn connected(&self) -> bool {
        self.srtp.is_some()
    }

    /// One datagram from the server.
    pub fn receive(&mut self, now: Instant, data: &[u8]) {
        match data.first() {
            Some(0..=3) => {
                let (_, pwd) = self.server_ice.as_ref().expect("server credentials");
                check_binding_response(data, pwd).expect("binding response");
            }
            Some(20..=63) => {
                if let Some(dtls) = self.dtls.as_mut() {
                    match dtls.handle(now, data) {
                        Ok(DtlsOutput::Connected(srtp)) => self.srtp = Some(srtp),
                        Ok(_) => {}
                        Err(e) => self.dtls_error = Some(e.to_string()),
                    }
                }
            }
            Some(128..=191) => {
                let srtp = self.srtp.as_mut().expect("SRTP keys");
                let mut buf = data.to_vec();
                let n = if (192..=223).contains(&buf[1]) {
                    srtp.inbound.unprotect_rtcp(&mut buf).expect("SRTCP opens")
                } else {
                    srtp.inbound.unprotect_rtp(&mut buf).expect("SRTP opens")
                };
                buf.truncate(n);
                self.received.push(buf);
            }
            _ => panic!("unexpected datagram"),
        }
    }

    pub fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let srtp = self.srtp.as_mut().expect("SRTP keys");
        let rtcp = (192..=223).contains(&plain[1]);
        let mut buf = plain.to_vec();
        let profile = srtp.outbound.profile();
        buf.resize(
            plain.len() + profile.rtp_overhead().max(profile.rtcp_overhead()),
            0,
        );
        let n = if rtcp {
            srtp.outbound.protect_rtcp(&mut buf, plain.len())
        } else {
            srtp.outbound.protect_rtp(&mut buf, plain.len())
        }
        .expect("seal");
        buf.truncate(n);
        buf
    }
}

/// An endpoint and its browsers, on a virtual clock.
pub struct Net {
    pub now: Instant,
    pub endpoint: Endpoint,
    pub browsers: Vec<Browser>,
    pub server: SocketAddr,
}

impl Net {
    pub fn new(browsers: usize) -> Net {
        let server = SocketAddr::from(([10, 77, 0, 1], 50_000));
        Net {
            now: Instant::now(),
            endpoint: Endpoint::new(Identity::generate().expect("certificate"), vec![server]),
            browsers: (0..browsers).map(|i| Browser::new(i as u16)).collect(),
            server,
        }
    }

    /// Browser `i` sends `data` to the server.
    pub fn send(&mut self, i: usize, data: &[u8]) {
        let mut buf = data.to_vec();
        let from = self.browsers[i].addr;
        self.endpoint.handle_datagram(self.now, from, &mut buf);
    }

    /// Delivers everything the server queued; returns how many datagrams.
    pub fn deliver(&mut self) -> usize {
        let out: Vec<(SocketAddr, Vec<u8>)> = self
            .endpoint
            .transmits()
            .iter()
            .map(|(to, d)| (to, d.to_vec()))
            .collect();
        self.endpoint.transmits().clear();
        let now = self.now;
        for (to, data) in &out {
            if let Some(b) = self.browsers.iter_mut().find(|b| b.addr == *to) {
                b.receive(now, data);
            }
        }
        out.len()
    }

    /// Runs checks, DTLS and timers until `done` holds or `limit` of virtual time passes.
    pub fn run_until(&mut self, limit: Duration, done: impl Fn(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            loop {
                let mut moved = self.deliver();
                for i in 0..self.browsers.len() {
                    let mut out = Vec::new();
                    if let Some(dtls) = self.browsers[i].dtls.as_mut() {
                        while let Some(d) = dtls.poll_transmit() {
                            out.push(d);
                        }
                    }
                    moved += out.len();
                    for d in out {
                        self.send(i, &d);
                    }
                }
                if moved == 0 {
                    break;
                }
            }
            if done(self) {
                return true;
            }
            self.now += Duration::from_millis(10);
            let now = self.now;
            self.endpoint.handle_timeout(now);
            for b in &mut self.browsers {
                if let Some(dtls) = b.dtls.as_mut() {
                    let _ = dtls.handle_timeout(now);
                }
            }
        }
        done(self)
    }

    /// Browser `i` checks connectivity (nominating) and the handshake runs to the end.
    pub fn connect(&mut self, i: usize) -> bool {
        let check = self.browsers[i].check();
        self.send(i, &check);
        self.run_until(Duration::from_secs(5), |n| n.browsers[i].connected())
    }

    /// Browser `i` publishes `fixture_name` as `participant` (mids "0" audio, "1" video) and
    /// connects; returns the server's answer.
    pub fn publish(
        &mut self,
        i: usize,
        participant: ParticipantId,
        room: RoomId,
        fixture_name: &str,
    ) -> String {
        let offer = self.browsers[i].offer(fixture_name);
        let tracks = vec![
            ("0".to_string(), MediaKind::Audio),
            ("1".to_string(), MediaKind::Video),
        ];
        let answer = self
            .endpoint
            .publish(
                self.now,
                participant,
                room,
                &offer,
                &tracks,
                RoleLimits::default(),
                SrtpPolicy::GcmOnly,
            )
            .expect("answered");
        self.browsers[i].take_server_description(&answer);
        assert!(self.connect(i), "publisher {i} connects");
        answer
    }

    /// Browser `i` subscribes to `streams` as `participant`: the endpoint's offer, the
    /// browser's answer, then ICE and DTLS; returns the offer.
    pub fn subscribe(
        &mut self,
        i: usize,
        participant: ParticipantId,
        room: RoomId,
        streams: Vec<StreamRef>,
    ) -> String {
        let now = self.now;
        self.endpoint
            .set_subscriptions(now, participant, room, streams);
        let offer = std::iter::from_fn(|| self.endpoint.poll_event())
            .find_map(|e| match e {
                MediaEvent::Offer {
                    participant: p,
                    sdp,
                    ..
                } if p == participant => Some(sdp),
                _ => None,
            })
            .expect("an offer for the subscriber");
        let answer = self.browsers[i].answer(&offer);
        self.endpoint
            .subscribe_answer(now, participant, &answer)
            .expect("answer taken");
        assert!(self.connect(i), "subscriber {i} connects");
        offer
    }
}

//! Dialing: echo, leaving from the listening port, source preference, collisions, fallbacks.

mod util;

use std::net::SocketAddr;

use futures::{AsyncReadExt, AsyncWriteExt, future::join_all};
use libp2p_core::{
    Transport as _,
    transport::{ListenerId, PortUse},
};
use libp2p_reuseport::{Config, Fallback, PortOrigin, Transport};
use util::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn echo_both_ways_over_ipv4_and_ipv6() {
    for addr in ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"] {
        let mut a = transport();
        let mut b = transport();
        let (_, b_addr) = listen(&mut b, addr).await;
        let (mut dialed, mut accepted, _) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        send(&mut dialed, &mut accepted, b"ping from the dialer").await;
        send(&mut accepted, &mut dialed, b"pong from the listener").await;
        assert_eq!(accepted.port_origin(), PortOrigin::Accepted);
        assert_eq!(dialed.peer_addr().unwrap(), b_addr);
        assert_eq!(accepted.local_addr().unwrap(), b_addr);
        assert_eq!(dialed.local_addr().unwrap(), accepted.peer_addr().unwrap());
        // Closing the write half is seen as end of stream on the other side.
        within("close", dialed.close()).await.unwrap();
        let mut rest = Vec::new();
        within("read to end", accepted.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(rest.is_empty());
    }
}

#[tokio::test]
async fn reuse_dial_leaves_from_the_listening_port() {
    if !port_sharing_here("reuse_dial_leaves_from_the_listening_port") {
        return;
    }
    for (listen_addr, wildcard) in [
        ("/ip4/127.0.0.1/tcp/0", false),
        ("/ip4/0.0.0.0/tcp/0", true),
        ("/ip6/::1/tcp/0", false),
        ("/ip6/::/tcp/0", true),
    ] {
        let mut a = transport();
        let mut b = transport();
        let (_, a_addr) = listen(&mut a, listen_addr).await;
        let b_listen = if a_addr.is_ipv4() {
            "/ip4/127.0.0.1/tcp/0"
        } else {
            "/ip6/::1/tcp/0"
        };
        let (_, b_addr) = listen(&mut b, b_listen).await;
        let (dialed, _accepted, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        assert_eq!(
            send_back.port(),
            a_addr.port(),
            "{listen_addr}: listener sees the listen port"
        );
        assert_eq!(dialed.local_addr().unwrap(), send_back);
        assert_eq!(dialed.port_origin(), PortOrigin::Reused);
        assert!(dialed.is_port_reused());
        if wildcard {
            assert!(
                send_back.ip().is_loopback(),
                "wildcard binds the loopback IP"
            );
        }

        let (dialed, _accepted, send_back) = connect(&mut a, &mut b, b_addr, PortUse::New).await;
        assert_ne!(
            send_back.port(),
            a_addr.port(),
            "PortUse::New takes an ephemeral port"
        );
        assert_eq!(
            dialed.port_origin(),
            PortOrigin::Ephemeral(Fallback::NotRequested)
        );
    }
}

#[tokio::test]
async fn loopback_listener_is_preferred_over_wildcard_for_loopback_destinations() {
    if !port_sharing_here("loopback_listener_is_preferred_over_wildcard_for_loopback_destinations")
    {
        return;
    }
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let mut a = transport();
    let wildcard = ListenerId::next();
    a.listen_on(wildcard, ma("/ip4/0.0.0.0/tcp/0")).unwrap();
    let wildcard_port = a.reuse_table().listen_addrs()[0].port();
    let specific = ListenerId::next();
    a.listen_on(specific, ma("/ip4/127.0.0.2/tcp/0")).unwrap();
    let specific_addr = a.reuse_table().listen_addrs()[1];

    let (_d, _a, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(
        send_back, specific_addr,
        "loopback listener registered later still wins"
    );
    assert_eq!(
        a.reuse_table().source_for(sa("127.0.0.1:9")),
        Ok(specific_addr)
    );

    assert!(a.remove_listener(specific));
    let (_d, _a, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(
        send_back,
        SocketAddr::new(sa("127.0.0.1:0").ip(), wildcard_port)
    );

    // A listener of the other family never serves.
    assert!(a.remove_listener(wildcard));
    let _v6 = listen(&mut a, "/ip6/::1/tcp/0").await;
    let (d, _a, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(d.port_origin(), PortOrigin::Ephemeral(Fallback::NoListener));
    assert_ne!(send_back.port(), wildcard_port);
}

#[tokio::test]
async fn first_registered_of_two_listeners_on_one_ip_wins_every_time() {
    if !port_sharing_here("first_registered_of_two_listeners_on_one_ip_wins_every_time") {
        return;
    }
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip6/::1/tcp/0").await;
    let mut a = transport();
    let (first, first_addr) = listen(&mut a, "/ip6/::1/tcp/0").await;
    let (_, second_addr) = listen(&mut a, "/ip6/::1/tcp/0").await;
    for _ in 0..20 {
        let (dialed, accepted, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        assert_eq!(send_back, first_addr);
        close_remote_first(dialed, accepted).await;
    }
    assert!(a.remove_listener(first));
    let (_d, _a, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(send_back, second_addr);
}

// Windows refuses a second listening socket on one address: it has no SO_REUSEPORT, and the
// listener sets no SO_REUSEADDR (docs/platforms.md).
#[cfg(not(windows))]
#[tokio::test]
async fn listeners_sharing_an_address_are_counted() {
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let mut a = transport();
    let (one, shared) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let (two, again) = listen(&mut a, &to_multiaddr(shared).to_string()).await;
    assert_eq!(
        again, shared,
        "SO_REUSEPORT lets our own listeners share an address"
    );
    assert_eq!(a.reuse_table().listen_addrs(), vec![shared]);

    assert!(a.remove_listener(one));
    let (_d, _a, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(send_back, shared, "still registered by the second listener");

    assert!(a.remove_listener(two));
    assert!(a.reuse_table().listen_addrs().is_empty());
    let (d, _a, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_ne!(send_back.port(), shared.port());
    assert_eq!(d.port_origin(), PortOrigin::Ephemeral(Fallback::NoListener));
}

#[tokio::test]
async fn wildcard_port_is_reused_right_after_listen_on() {
    if !port_sharing_here("wildcard_port_is_reused_right_after_listen_on") {
        return;
    }
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let mut a = transport();
    // No event of `a` is polled before the dial.
    a.listen_on(ListenerId::next(), ma("/ip4/0.0.0.0/tcp/0"))
        .unwrap();
    let port = a.reuse_table().listen_addrs()[0].port();
    let (dialed, _a, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(send_back.port(), port);
    assert!(dialed.is_port_reused());
}

#[tokio::test]
async fn dialing_our_own_listening_address_does_not_connect_to_itself() {
    for listen_addr in [
        "/ip4/127.0.0.1/tcp/0",
        "/ip4/0.0.0.0/tcp/0",
        "/ip6/::1/tcp/0",
    ] {
        let mut a = transport();
        let id = ListenerId::next();
        a.listen_on(id, ma(listen_addr)).unwrap();
        let port = a.reuse_table().listen_addrs()[0].port();
        let own = if listen_addr.contains("ip6") {
            "::1"
        } else {
            "127.0.0.1"
        };
        let own = SocketAddr::new(own.parse().unwrap(), port);
        assert_eq!(a.reuse_table().source_for(own), Err(Fallback::Busy));
        let future = a.dial(to_multiaddr(own), opts(PortUse::Reuse)).unwrap();
        let (dialed, (accepted, _, send_back)) =
            tokio::join!(within("self dial", future), accept(&mut a));
        let dialed = dialed.unwrap();
        assert_eq!(dialed.port_origin(), PortOrigin::Ephemeral(Fallback::Busy));
        assert_ne!(dialed.local_addr().unwrap(), own, "not a self-connection");
        assert_eq!(send_back, dialed.local_addr().unwrap());
        assert_eq!(accepted.peer_addr().unwrap(), dialed.local_addr().unwrap());
    }
}

#[tokio::test]
async fn two_hundred_concurrent_reuse_dials_to_one_listener() {
    if !port_sharing_here("two_hundred_concurrent_reuse_dials_to_one_listener") {
        return;
    }
    let mut b = Transport::new(Config::new().listen_backlog(1024));
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let mut a = transport();
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let dials: Vec<_> = (0..200)
        .map(|_| a.dial(to_multiaddr(b_addr), opts(PortUse::Reuse)).unwrap())
        .collect();
    let accept_all = async {
        let mut accepted = Vec::new();
        while accepted.len() < 200 {
            accepted.push(accept(&mut b).await);
        }
        accepted
    };
    let (dialed, accepted) = tokio::join!(within("200 dials", join_all(dials)), accept_all);
    let dialed: Vec<_> = dialed
        .into_iter()
        .map(|d| d.expect("every dial succeeds"))
        .collect();
    let reused = dialed.iter().filter(|d| d.is_port_reused()).count();
    let busy = dialed
        .iter()
        .filter(|d| d.port_origin() == PortOrigin::Ephemeral(Fallback::Busy))
        .count();
    assert_eq!(
        (reused, busy),
        (1, 199),
        "one pair per (local, remote); no failed syscall"
    );
    assert_eq!(accepted.len(), 200);
    let from_listen_port = accepted
        .iter()
        .filter(|(_, _, from)| from.port() == a_addr.port())
        .count();
    assert_eq!(from_listen_port, 1);
    assert_eq!(a.reuse_table().dialed_connections(), 1);
    drop(dialed);
    assert_eq!(
        a.reuse_table().dialed_connections(),
        0,
        "no longer open once dropped"
    );
    assert_eq!(
        a.reuse_table().closing_connections(),
        1,
        "the remote has not closed yet"
    );
    drop(accepted);
    wait_until("the pair is released", || {
        a.reuse_table().closing_connections() == 0
    })
    .await;
}

/// Polls `condition` every millisecond until it holds, failing after the test timeout.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_pair_is_not_redialed_until_the_remote_closes_the_previous_connection() {
    if !port_sharing_here("a_pair_is_not_redialed_until_the_remote_closes_the_previous_connection")
    {
        return;
    }
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let mut a = transport();
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;

    // The remote keeps the old connection open: the pair is not offered, and no connect fails.
    let (mut dialed, mut accepted, _) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert!(dialed.is_port_reused());
    send(&mut dialed, &mut accepted, b"x").await;
    drop(dialed);
    let mut rest = Vec::new();
    within("eof", accepted.read_to_end(&mut rest))
        .await
        .unwrap();
    assert_eq!(a.reuse_table().closing_connections(), 1);
    let (second, _second_accepted, send_back) =
        connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(second.port_origin(), PortOrigin::Ephemeral(Fallback::Busy));
    assert_ne!(send_back.port(), a_addr.port());
    drop(second);

    // Once the remote closes, the pair is released and the listening port is used again.
    drop(accepted);
    wait_until("the pair is released", || {
        a.reuse_table().closing_connections() == 0
    })
    .await;
    let (third, _third_accepted, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert!(third.is_port_reused());
    assert_eq!(send_back.port(), a_addr.port());
}

#[tokio::test]
async fn quick_redials_never_spend_a_failed_system_call() {
    if !port_sharing_here("quick_redials_never_spend_a_failed_system_call") {
        return;
    }
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    // The remote echoes one byte and closes when it reads end of stream.
    tokio::spawn(async move {
        loop {
            let (mut stream, _, _) = accept(&mut b).await;
            tokio::spawn(async move {
                let mut byte = [0];
                stream.read_exact(&mut byte).await.unwrap();
                stream.write_all(&byte).await.unwrap();
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).await.unwrap();
            });
        }
    });
    let mut a = transport();
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let rounds = 200;
    let (mut reused, mut busy) = (0, 0);
    for _ in 0..rounds {
        let mut stream = dial(&mut a, b_addr, PortUse::Reuse).await.unwrap();
        within("write", stream.write_all(b"!")).await.unwrap();
        let mut byte = [0];
        within("read", stream.read_exact(&mut byte)).await.unwrap();
        match stream.port_origin() {
            PortOrigin::Reused => {
                assert_eq!(stream.local_addr().unwrap().port(), a_addr.port());
                reused += 1;
            }
            // The previous connection from the port is still closing: passed over, no syscall.
            PortOrigin::Ephemeral(Fallback::Busy) => busy += 1,
            other => panic!("unexpected origin {other:?}"),
        }
        // Dropped before the remote closes; the next dial comes at once.
        drop(stream);
    }
    println!("client drops first, redials at once: {reused}/{rounds} reused, {busy} passed over");
    assert_eq!(reused + busy, rounds);
    assert!(
        reused >= rounds / 4,
        "the port is reused once released: {reused}/{rounds}"
    );
}

/// Dials, sends a byte, echoes it, and closes on the side given, `cycles` times.
async fn cycles(cycles: usize, client_closes_first: bool) -> usize {
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let mut a = transport();
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let mut reused = 0;
    for i in 0..cycles {
        let (mut dialed, mut accepted, send_back) =
            connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        send(&mut dialed, &mut accepted, &[i as u8]).await;
        send(&mut accepted, &mut dialed, &[i as u8]).await;
        if dialed.is_port_reused() {
            assert_eq!(send_back.port(), a_addr.port());
            reused += 1;
        } else {
            assert_ne!(send_back.port(), a_addr.port());
        }
        let (first, second) = if client_closes_first {
            (&mut dialed, &mut accepted)
        } else {
            (&mut accepted, &mut dialed)
        };
        within("close", first.close()).await.unwrap();
        let mut rest = Vec::new();
        within("eof", second.read_to_end(&mut rest)).await.unwrap();
        drop((dialed, accepted));
    }
    assert_eq!(a.reuse_table().dialed_connections(), 0);
    reused
}

#[tokio::test]
async fn five_hundred_cycles_server_closes_first() {
    if !port_sharing_here("five_hundred_cycles_server_closes_first") {
        return;
    }
    let reused = cycles(500, false).await;
    println!("server closes first: {reused}/500 dials reused the listening port");
    assert!(reused > 0);
}

#[tokio::test]
async fn five_hundred_cycles_client_closes_first() {
    if !port_sharing_here("five_hundred_cycles_client_closes_first") {
        return;
    }
    let reused = cycles(500, true).await;
    println!("client closes first: {reused}/500 dials reused the listening port");
    assert!(reused > 0);
}

#[tokio::test]
async fn port_reuse_off_dials_from_ephemeral_ports() {
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let mut a = Transport::new(Config::new().port_reuse(false));
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    assert!(!a.reuse_table().is_enabled());
    assert!(
        a.reuse_table().listen_addrs().is_empty(),
        "nothing registered"
    );
    let (dialed, _a, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_ne!(send_back.port(), a_addr.port());
    assert_eq!(
        dialed.port_origin(),
        PortOrigin::Ephemeral(Fallback::Disabled)
    );
}

#[tokio::test]
async fn refused_connections_are_returned_as_they_are() {
    if !port_sharing_here("refused_connections_are_returned_as_they_are") {
        return;
    }
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut a = transport();
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let err = dial(&mut a, closed, PortUse::Reuse)
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let message = err.to_string();
    assert!(message.contains(&closed.to_string()), "{message}");
    assert!(
        message.contains(&a_addr.to_string()),
        "names the reused source: {message}"
    );
    assert_eq!(
        a.reuse_table().dialed_connections(),
        0,
        "the failed dial released its pair"
    );
}

// socket2 reads the keepalive idle time back on unix only.
#[cfg(unix)]
#[tokio::test]
async fn options_reach_the_sockets() {
    use socket2::SockRef;
    let config = Config::new()
        .nodelay(false)
        .ttl(42)
        .keepalive(Some(std::time::Duration::from_secs(77)))
        .linger(Some(std::time::Duration::from_secs(3)));
    for addr in ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"] {
        let mut a = Transport::new(config.clone());
        let mut b = Transport::new(config.clone());
        let _ = listen(&mut a, addr).await;
        let (_, b_addr) = listen(&mut b, addr).await;
        for port_use in [PortUse::Reuse, PortUse::New] {
            let (dialed, accepted, _) = connect(&mut a, &mut b, b_addr, port_use).await;
            for stream in [&dialed, &accepted] {
                let s = SockRef::from(stream);
                assert!(!s.tcp_nodelay().unwrap());
                let ttl = if b_addr.is_ipv4() {
                    s.ttl_v4()
                } else {
                    s.unicast_hops_v6()
                };
                assert_eq!(ttl.unwrap(), 42);
                assert!(s.keepalive().unwrap());
                assert_eq!(s.tcp_keepalive_time().unwrap().as_secs(), 77);
                assert_eq!(s.linger().unwrap(), Some(std::time::Duration::from_secs(3)));
            }
        }
    }
    // Defaults: TCP_NODELAY on, no linger, keepalive after 30 s idle; reused and ephemeral
    // dials and accepted connections alike.
    let mut a = transport();
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let mut b = transport();
    let _ = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    for port_use in [PortUse::Reuse, PortUse::New] {
        let (dialed, accepted, _) = connect(&mut b, &mut a, a_addr, port_use).await;
        for stream in [&dialed, &accepted] {
            let s = SockRef::from(stream);
            assert!(s.tcp_nodelay().unwrap());
            assert_eq!(s.linger().unwrap(), None);
            assert!(s.keepalive().unwrap());
            assert_eq!(s.tcp_keepalive_time().unwrap().as_secs(), 30);
        }
    }
    // Turned off.
    let mut a = Transport::new(Config::new().keepalive(None));
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let mut b = Transport::new(Config::new().keepalive(None));
    let (dialed, accepted, _) = connect(&mut b, &mut a, a_addr, PortUse::New).await;
    for stream in [&dialed, &accepted] {
        assert!(!SockRef::from(stream).keepalive().unwrap());
    }
}

// Two transports on one listening address: not on Windows (see above); tests/windows.rs has its
// own dial that the kernel refuses.
#[cfg(not(windows))]
#[tokio::test]
async fn a_pair_taken_outside_the_table_falls_back_once() {
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    // Two transports share one listening port (allowed on purpose with SO_REUSEPORT), each
    // with its own table: the second does not know the first's connection.
    let mut first = transport();
    let (_, shared) = listen(&mut first, "/ip4/127.0.0.1/tcp/0").await;
    let mut second = Transport::new(Config::new().foreign_port_sharing(true));
    let (_, again) = listen(&mut second, &to_multiaddr(shared).to_string()).await;
    assert_eq!(again, shared);
    let (one, _a1, from_one) = connect(&mut first, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!((one.port_origin(), from_one), (PortOrigin::Reused, shared));
    let (two, _a2, from_two) = connect(&mut second, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(
        two.port_origin(),
        PortOrigin::Ephemeral(Fallback::KernelRefused(PAIR_TAKEN))
    );
    assert_ne!(from_two.port(), shared.port());
    assert_eq!(
        second.reuse_table().dialed_connections(),
        0,
        "the refused pair is not held"
    );
}

#[test]
fn public_types_can_move_between_tasks() {
    fn owned<T: Send + Unpin + 'static>() {}
    fn shared<T: Send + Sync + 'static>() {}
    fn stream<T: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static>() {}
    owned::<Transport>();
    owned::<libp2p_reuseport::TcpStream>();
    owned::<<Transport as libp2p_core::Transport>::Dial>();
    shared::<Config>();
    shared::<libp2p_reuseport::ReuseTable>();
    stream::<libp2p_reuseport::TcpStream>();
}

#[tokio::test]
async fn into_inner_hands_over_the_tokio_stream_and_passes_its_pair_over() {
    if !port_sharing_here("into_inner_hands_over_the_tokio_stream_and_passes_its_pair_over") {
        return;
    }
    let mut a = transport();
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let (dialed, mut accepted, from) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(from, a_addr);
    let mut inner: tokio::net::TcpStream = dialed.into();
    assert_eq!(inner.local_addr().unwrap(), a_addr);
    within(
        "write",
        tokio::io::AsyncWriteExt::write_all(&mut inner, b"tokio"),
    )
    .await
    .unwrap();
    let mut buf = [0; 5];
    within("read", accepted.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"tokio");
    // The table no longer holds the connection open, but passes its pair over as one closed
    // before its remote: a redial to the same remote leaves from an ephemeral port, at once.
    let table = a.reuse_table();
    assert_eq!(table.dialed_connections(), 0);
    assert_eq!(table.closing_connections(), 1);
    let (again, _accepted_again, from_again) =
        connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(again.port_origin(), PortOrigin::Ephemeral(Fallback::Busy));
    assert_ne!(from_again, a_addr);
    drop(inner);
}

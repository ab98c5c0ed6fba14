// A js-libp2p peer for the interop tests: TCP and WebSockets, noise, yamux, identify, ping.
//
//   node peer.mjs --listen /ip4/127.0.0.1/tcp/0 [--dial <multiaddr>]   (a /tcp/... or /tcp/.../ws address)
//
// Prints one JSON object per line: {"event":"listening",...}, {"event":"connection",...} for
// every connection with the remote address as js-libp2p sees it, {"event":"identify",...} with
// the address the remote observed for us, {"event":"ping",...} for each ping it sends. It pings
// every connected peer once a second and runs until killed.

// js-libp2p 3.x calls Promise.withResolvers, which Node 20 lacks.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

// @libp2p/websockets dials with the global WebSocket, which Node has from version 22 on; before,
// the `ws` package (which @libp2p/websockets listens with) provides the same API.
if (typeof globalThis.WebSocket !== 'function') {
  globalThis.WebSocket = (await import('ws')).WebSocket
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { webSockets } = await import('@libp2p/websockets')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { multiaddr } = await import('@multiformats/multiaddr')

const args = process.argv.slice(2)
const option = (name) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const say = (event) => process.stdout.write(JSON.stringify(event) + '\n')

const node = await createLibp2p({
  addresses: { listen: option('--listen') ? [option('--listen')] : [] },
  transports: [tcp(), webSockets()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() },
  // The default admits a few inbound connections per second per IP; tests connect faster.
  connectionManager: { inboundConnectionThreshold: 1000 }
})

node.addEventListener('connection:open', (evt) => {
  const connection = evt.detail
  say({
    event: 'connection',
    direction: connection.direction,
    remotePeer: connection.remotePeer.toString(),
    remoteAddr: connection.remoteAddr.toString()
  })
})

node.addEventListener('peer:identify', (evt) => {
  const result = evt.detail
  say({
    event: 'identify',
    peer: result.peerId.toString(),
    observedAddr: result.observedAddr?.toString() ?? null,
    listenAddrs: result.listenAddrs.map((a) => a.toString())
  })
})

say({
  event: 'listening',
  peerId: node.peerId.toString(),
  addrs: node.getMultiaddrs().map((a) => a.toString())
})

const target = option('--dial')
if (target) {
  try {
    await node.dial(multiaddr(target))
  } catch (err) {
    say({ event: 'error', what: 'dial', message: String(err) })
  }
}

setInterval(async () => {
  for (const peer of node.getPeers()) {
    try {
      const rtt = await node.services.ping.ping(peer)
      say({ event: 'ping', peer: peer.toString(), rtt })
    } catch (err) {
      say({ event: 'error', what: 'ping', peer: peer.toString(), message: String(err) })
    }
  }
}, 1000)

process.on('SIGTERM', async () => {
  await node.stop()
  process.exit(0)
})

'use strict';
// The Node peer over HTTP: Fastify, POST /v1/events doing the peer's work (validate the envelope
// and the payload, render every channel) and answering 202, as ours does after it has also
// claimed the event id, recorded the event and queued it (which this peer does not do).
// One worker per core with node:cluster (Fastify's documentation: run one process per core
// behind the cluster module or a balancer), logger off, the raw body parsed by the peer.
//
//   NOTIFY_CATALOG_DIR=catalog NOTIFY_API_KEYS=key PORT=8082 WORKERS=2 node server.js

const cluster = require('node:cluster');
const os = require('node:os');

const workers = Number(process.env.WORKERS || os.availableParallelism());

if (cluster.isPrimary && workers > 1) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code) => {
    if (code !== 0) console.error(`worker ${worker.process.pid} exited with ${code}`);
  });
} else {
  const { Peer, Invalid } = require('./peer.js');
  const fastify = require('fastify')({ logger: false, bodyLimit: 240 * 1024 });
  const peer = new Peer(process.env.NOTIFY_CATALOG_DIR || 'catalog');
  const keys = new Set((process.env.NOTIFY_API_KEYS || '').split(',').map((k) => k.trim()).filter(Boolean));

  // The body as a string: the peer parses and validates it itself.
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => done(null, body));

  fastify.post('/v1/events', async (request, reply) => {
    const auth = request.headers.authorization || '';
    if (!auth.startsWith('Bearer ') || !keys.has(auth.slice(7))) {
      return reply.code(401).send({ title: 'Unauthorized' });
    }
    try {
      const { event, type, payload } = peer.validate(request.body);
      peer.render(event, type, payload);
      const location = `/v1/events/${event.event_id}`;
      return reply
        .code(202)
        .header('location', location)
        .send({
          event_id: event.event_id,
          event_type: event.event_type,
          status: 'accepted',
          priority: event.priority || type.priority,
          accepted_at: new Date().toISOString(),
          links: { self: location },
        });
    } catch (e) {
      if (e instanceof Invalid) return reply.code(e.status).send({ title: 'Invalid event', errors: e.errors });
      throw e;
    }
  });

  fastify.listen({ host: '127.0.0.1', port: Number(process.env.PORT || 8082) }).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}

# syntax=docker/dockerfile:1
# portcullis: multi-stage build; the runtime image holds only production dependencies and dist/.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY protos ./protos
COPY examples ./examples
# The image's `node` user (uid 1000); nothing in /app is writable by it. Mount a catalog and
# pass `serve --config FILE` to run something other than the embedded example.
USER 1000:1000
# 9001: Check + grpc.health.v1 (Envoy only, loopback in the pod: the default bind is 127.0.0.1;
# `serve --grpc-address 0.0.0.0:9001` to publish it); 9090: /metrics /healthz /readyz.
EXPOSE 9001 9090
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["serve"]

